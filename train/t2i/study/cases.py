"""The study's prompts: each a caption of the testbed's language, what its negative names, and the seeds.

* object cases: a scene of 2-3 named objects on a named background; the negative names one of the objects
  ("blue square"): removing it while keeping the rest is Ban et al.'s object removal (Sec. 6);
* attribute cases: one named object carries a said texture ("a striped yellow triangle"); the negative names the
  texture ("striped"): the adjective negatives of Ban et al. (Sec. 4, "rusty");
* adherence cases: captions of the quality bar's kind, for diffusion-negative prompting (Desai & Vasconcelos);
* concept cases: prompts that do not name a colour ("three shapes on vertical stripes") and prompts that do
  ("a red circle and a blue square"), with the forbidden concept "red shape" (the DNG paper's text-to-image claim).

Every case is a pure function of the study's seed; image j of case i starts from the seed ``image_seed(i, j)`` in
every method (common random numbers).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from train.t2i.captions import EVALUATION, BackgroundSpec, CaptionSpec, ObjectSpec, captions_for, parse, spec_text
from train.t2i.scenes import BACKGROUNDS, COLOURS, SHAPES, TONES, sample_scenes

IMAGE_SEED_BASE = 5_000_000


def image_seed(case: int, seed: int) -> int:
    return IMAGE_SEED_BASE + 1000 * case + seed


@dataclass(frozen=True)
class Case:
    prompt: str
    negative: str | None
    kind: str  # "object", "attribute", "adherence", "concept-unnamed", "concept-named"
    target: ObjectSpec | None = None  # the object the negative is about (object and attribute cases)

    @property
    def spec(self) -> CaptionSpec:
        return parse(self.prompt)

    def kept(self) -> CaptionSpec:
        """What a perfect removal shows: the caption without the negated object (object cases), or with the
        target's texture left open (attribute cases: anything but the negated texture is a success)."""
        spec = self.spec
        if self.kind == "object":
            return CaptionSpec(tuple(o for o in spec.objects if (o.shape, o.colour) != (self.target.shape,
                                                                                        self.target.colour)),
                               spec.background)
        if self.kind == "attribute":
            return CaptionSpec(tuple(ObjectSpec(o.shape, o.colour, o.size, None) if o == self.target else o
                                     for o in spec.objects), spec.background)
        return spec


def _scenes(seed: int, n: int, min_objects: int = 2):
    g = torch.Generator().manual_seed(seed)
    out = []
    while len(out) < n:
        scenes = sample_scenes(g, 256)
        out += [scenes[i] for i in range(len(scenes)) if int(scenes.count[i]) >= min_objects]
    return out[:n]


def _background(scene, rng: random.Random) -> BackgroundSpec:
    kind, tone = BACKGROUNDS[int(scene.background[0])], TONES[int(scene.tone[0])]
    return BackgroundSpec(kind, tone if rng.random() < 0.5 else None)


def _objects(scene) -> list[ObjectSpec]:
    return [ObjectSpec(SHAPES[int(s)], COLOURS[int(c)]) for s, c in zip(scene.shape[0], scene.colour[0], strict=True)
            if s >= 0]


def object_cases(n: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for scene in _scenes(seed, n):
        objects = _objects(scene)
        rng.shuffle(objects)
        target = objects[rng.randrange(len(objects))]
        prompt = spec_text(CaptionSpec(tuple(objects), _background(scene, rng)))
        cases.append(Case(prompt, f"{target.colour} {target.shape}", "object", target))
    return cases


def attribute_cases(n: int, seed: int) -> list[Case]:
    rng = random.Random(seed + 1)
    cases = []
    for scene in _scenes(seed + 1, n):
        objects = _objects(scene)
        rng.shuffle(objects)
        k = rng.randrange(len(objects))
        texture = rng.choice(("striped", "dotted"))
        target = ObjectSpec(objects[k].shape, objects[k].colour, None, texture)
        objects[k] = target
        prompt = spec_text(CaptionSpec(tuple(objects), _background(scene, rng)))
        cases.append(Case(prompt, texture, "attribute", target))
    return cases


def adherence_cases(n: int, seed: int) -> list[Case]:
    scenes = sample_scenes(torch.Generator().manual_seed(seed + 2), n)
    return [Case(text, None, "adherence") for text in captions_for(scenes, seed + 2, EVALUATION)]


FORBIDDEN = "red shape"


def concept_cases(n: int, seed: int) -> list[Case]:
    """Half of the prompts name no colour ("three shapes on vertical stripes"), half name a red object among
    others; the forbidden concept is "red shape" in both."""
    rng = random.Random(seed + 3)
    cases = []
    for i in range(n):
        kind = BACKGROUNDS[rng.randrange(len(BACKGROUNDS))]
        bg = spec_text(CaptionSpec((ObjectSpec("circle"),), BackgroundSpec(kind))).split(" on ", 1)[1]
        if i % 2 == 0:
            count = rng.choice(("two", "three"))
            cases.append(Case(f"{count} shapes on {bg}", FORBIDDEN, "concept-unnamed"))
        else:
            shapes = rng.sample(SHAPES, 2)
            other = rng.choice([c for c in COLOURS if c != "red"])
            prompt = f"a red {shapes[0]} and a {other} {shapes[1]} on {bg}"
            cases.append(Case(prompt, FORBIDDEN, "concept-named", ObjectSpec(shapes[0], "red")))
    return cases
