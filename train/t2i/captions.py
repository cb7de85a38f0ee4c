"""Captions of shapes scenes, and their parser.

`caption(scene, rng)` writes one of several templates and word orders; what it leaves out (an object's size or
texture, the background's tone, the stripes' orientation, sometimes a whole object's colour or shape) is left
to the model when it generates, so the captions teach partial descriptions ("red shape", "circle", "three
shapes on stripes") as well as full ones. `parse(text)` reads any caption back into a :class:`CaptionSpec`
(what it asks for), which `train/t2i/adherence.py` compares with what the detector finds.

    a small striped red circle and a blue square on a grey striped background
    blue square, red circle, horizontal stripes
    a black checkered background with a large dotted green cross
    three shapes on vertical stripes
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from train.t2i.scenes import BACKGROUNDS, COLOURS, MAX_OBJECTS, SHAPES, SIZES, TEXTURES, TONES, Scenes

COUNT_WORDS = {"one": 1, "two": 2, "three": 3}
COUNT_NAMES = {v: k for k, v in COUNT_WORDS.items()}
STRIPES = ("horizontal", "vertical")
# Words of the captions' language, in a fixed order: the tokenizer gives each one token.
VOCABULARY = (
    "a", "and", "with", "on", "background", "shape", "shapes", "stripes", *COUNT_WORDS, *SIZES, *TEXTURES,
    *COLOURS, *SHAPES, *TONES, "horizontal", "vertical", "checkered", "cloudy",
)
PUNCTUATION = (",",)



@dataclass(frozen=True)
class CaptionStyle:
    """How often each part of a scene is written out (the rest is left to the model)."""

    count_only: float = 0.05  # "three shapes on stripes": the objects are not described
    colour_only: float = 0.08  # "a red shape"
    shape_only: float = 0.08  # "a circle"
    size: float = 0.4
    texture: float = 0.5
    background: float = 0.85
    tone: float = 0.5
    stripes_orientation: float = 0.7  # else "stripes" / "a striped background" (either orientation)
    templates: tuple[tuple[str, float], ...] = (("sentence", 0.5), ("list", 0.3), ("background_first", 0.2))


TRAINING = CaptionStyle()
# The quality bar's prompts: every object named by shape and colour, the background always said.
EVALUATION = CaptionStyle(count_only=0.0, colour_only=0.0, shape_only=0.0, background=1.0)


@dataclass(frozen=True)
class ObjectSpec:
    """One object a caption asks for; None: not said (any value matches)."""

    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    texture: str | None = None

    @property
    def named(self) -> bool:
        """Shape and colour both given: the object is identified."""
        return self.shape is not None and self.colour is not None

    def text(self) -> str:
        words = [w for w in (self.size, self.texture, self.colour) if w is not None]
        return " ".join([*words, self.shape or "shape"])


@dataclass(frozen=True)
class BackgroundSpec:
    """kind: one of BACKGROUNDS, or "striped" (horizontal or vertical stripes), or None; tone or None."""

    kind: str | None = None
    tone: str | None = None

    def accepts(self, kind: str, tone: str) -> bool:
        kind_ok = self.kind is None or self.kind == kind or (self.kind == "striped" and kind in STRIPES)
        return kind_ok and (self.tone is None or self.tone == tone)


@dataclass(frozen=True)
class CaptionSpec:
    objects: tuple[ObjectSpec, ...]
    background: BackgroundSpec | None = None

    @property
    def count(self) -> int:
        return len(self.objects)


class CaptionError(ValueError):
    """A caption outside the testbed's language (unknown word, too many objects, ...)."""


# --- writing -----------------------------------------------------------------------------------------------
def _background_phrase(kind: str, tone: str | None, rng: random.Random, article: bool,
                       style: CaptionStyle = TRAINING) -> str:
    t = f"{tone} " if tone else ""
    a = "a " if article else ""
    if kind == "plain":
        if tone is None:
            return f"{a}plain background"
        return f"{a}{t}background" if rng.random() < 0.6 else f"{a}plain {t}background"
    if kind in STRIPES:
        if rng.random() < style.stripes_orientation:
            return f"{t}{kind} stripes"
        return f"{t}stripes" if rng.random() < 0.5 else f"{a}{t}striped background"
    return f"{a}{t}{kind} background"


def _join(phrases: list[str], article: bool) -> str:
    if article:
        phrases = [f"a {p}" for p in phrases]
        return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return ", ".join(phrases)


def describe_objects(scenes: Scenes, i: int, rng: random.Random, style: CaptionStyle = TRAINING) -> list[ObjectSpec]:
    """The object specs a caption of scene i says, in a random order."""
    specs = []
    for k in range(MAX_OBJECTS):
        if scenes.obj[i, k] < 0:
            continue
        shape, colour = SHAPES[int(scenes.shape[i, k])], COLOURS[int(scenes.colour[i, k])]
        u = rng.random()
        if u < style.colour_only:
            shape = None
        elif u < style.colour_only + style.shape_only:
            colour = None
        size = SIZES[int(scenes.size[i, k])] if rng.random() < style.size else None
        texture = TEXTURES[int(scenes.texture[i, k])] if rng.random() < style.texture else None
        specs.append(ObjectSpec(shape, colour, size, texture))
    rng.shuffle(specs)
    return specs


def caption(scenes: Scenes, i: int, rng: random.Random, style: CaptionStyle = TRAINING) -> str:
    """One caption of scene i (a random template, word order and level of detail)."""
    count = int(scenes.count[i])
    kind, tone = BACKGROUNDS[int(scenes.background[i])], TONES[int(scenes.tone[i])]
    tone_said = tone if rng.random() < style.tone else None
    with_background = rng.random() < style.background

    def background(article: bool) -> str:
        return _background_phrase(kind, tone_said, rng, article, style)

    if rng.random() < style.count_only:
        objects = "a shape" if count == 1 else f"{COUNT_NAMES[count]} shapes"
        return f"{objects} on {background(True)}" if with_background else objects
    phrases = [s.text() for s in describe_objects(scenes, i, rng, style)]
    names, weights = zip(*style.templates, strict=True)
    template = rng.choices(names, weights=weights)[0]
    if template == "list":
        return ", ".join(phrases + ([background(False)] if with_background else []))
    if template == "background_first" and with_background:
        return f"{background(True)} with {_join(phrases, True)}"
    text = _join(phrases, True)
    return f"{text} on {background(True)}" if with_background else text


def full_caption(scene: dict, with_size: bool = True, with_texture: bool = True, with_tone: bool = True) -> str:
    """The one canonical sentence of a described scene (:meth:`Scenes.describe` / a detection): every object
    fully, in the given order, then the background."""
    specs = [ObjectSpec(o["shape"], o["colour"], o["size"] if with_size else None,
                        o["texture"] if with_texture else None) for o in scene["objects"]]
    return spec_text(CaptionSpec(tuple(specs), BackgroundSpec(scene["background"],
                                                             scene["tone"] if with_tone else None)))


def background_text(spec: BackgroundSpec | None) -> str:
    """The background phrase that parses back to `spec` ("" when nothing is said). A tone without a kind reads
    as a plain background of that tone: the language has no "any kind" with a tone."""
    if spec is None or (spec.kind is None and spec.tone is None):
        return ""
    kind, t = spec.kind, f"{spec.tone} " if spec.tone else ""
    if kind in STRIPES:
        return f"{t}{kind} stripes"
    if kind == "striped":
        return f"a {t}striped background"
    if kind in (None, "plain"):
        return f"a {t}background" if spec.tone else "a plain background"
    return f"a {t}{kind} background"


def spec_text(spec: CaptionSpec) -> str:
    """A caption that parses back to `spec` (sentence template). Without objects it is the background phrase
    alone (DNP's caption of an image where the detector finds no object)."""
    background = background_text(spec.background)
    if not spec.objects:
        return background
    text = _join([s.text() for s in spec.objects], True)
    return f"{text} on {background}" if background else text


# --- reading -----------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"[a-z]+|,")
_SPLIT = {",", "and", "with", "on"}
_BACKGROUND_WORDS = {"background", "stripes", "checkered", "cloudy"}


def words(text: str) -> list[str]:
    tokens = _TOKEN.findall(text.lower())
    unknown = sorted({t for t in tokens if t not in VOCABULARY and t not in PUNCTUATION})
    leftover = _TOKEN.sub(" ", text.lower()).strip()
    if unknown or leftover:
        bad = unknown + ([repr(leftover)] if leftover else [])
        raise CaptionError(f"not in the testbed's vocabulary: {', '.join(bad)} (words: {' '.join(VOCABULARY)})")
    return tokens


def _parse_background(segment: list[str], text: str) -> BackgroundSpec:
    tones = [w for w in segment if w in TONES]
    kinds = [w for w in segment if w in ("horizontal", "vertical", "checkered", "cloudy")]
    if "striped" in segment or ("stripes" in segment and not kinds):
        kinds.append("striped")
    if len(tones) > 1 or len(kinds) > 1:
        raise CaptionError(f"two backgrounds in {text!r}")
    kind = kinds[0] if kinds else ("plain" if "plain" in segment or tones else None)
    return BackgroundSpec(kind, tones[0] if tones else None)


def _parse_object(segment: list[str], text: str) -> list[ObjectSpec]:
    counted = [w for w in segment if w in COUNT_WORDS]
    if "shapes" in segment:
        if len(counted) != 1 or len(segment) != 2:
            raise CaptionError(f"say 'two shapes' or 'three shapes' in {text!r}")
        return [ObjectSpec()] * COUNT_WORDS[counted[0]]

    def one(values, what):
        found = [w for w in segment if w in values]
        if len(found) > 1:
            raise CaptionError(f"one object with two {what}s ({' '.join(found)}) in {text!r}")
        return found[0] if found else None

    shape, colour = one(SHAPES, "shape"), one(COLOURS, "colour")
    if shape is None and "shape" not in segment:
        raise CaptionError(f"{' '.join(segment)!r} names no shape (say 'shape' for any) in {text!r}")
    return [ObjectSpec(shape, colour, one(SIZES, "size"), one(TEXTURES, "texture"))]


def parse(text: str) -> CaptionSpec:
    """What a caption asks for. Raises :class:`CaptionError` for text outside the testbed's language."""
    segments, current = [], []
    for w in words(text):
        if w in _SPLIT:
            segments.append(current)
            current = []
        elif w != "a":
            current.append(w)
    segments.append(current)
    objects, background = [], None
    for segment in filter(None, segments):
        if _BACKGROUND_WORDS & set(segment) or (set(segment) <= set(TONES) | {"plain"}):
            if background is not None:
                raise CaptionError(f"two backgrounds in {text!r}")
            background = _parse_background(segment, text)
        else:
            objects.extend(_parse_object(segment, text))
    if not 1 <= len(objects) <= MAX_OBJECTS:
        raise CaptionError(f"a scene holds 1 to {MAX_OBJECTS} objects, {text!r} asks for {len(objects)}")
    named = [(o.shape, o.colour) for o in objects if o.named]
    if len(named) != len(set(named)):
        raise CaptionError(f"the same object twice in {text!r}")
    return CaptionSpec(tuple(objects), background)


def captions_for(scenes: Scenes, seed: int, style: CaptionStyle = TRAINING) -> list[str]:
    """One caption per scene, a pure function of (scenes, seed, style)."""
    rng = random.Random(seed)
    return [caption(scenes, i, rng, style) for i in range(len(scenes))]
