"""Does an image show what its caption asks for? The testbed's adherence scores, from the detector's reading.

For one image, :func:`score` compares a :class:`CaptionSpec` with a detection:
* named objects (shape and colour said) found, by shape and colour;
* sizes and textures said of named objects that were found, right or wrong;
* the count (as many objects as the caption has, no more, no fewer) and the background (kind and tone as said);
* exact match: an assignment of the caption's objects to distinct detected objects in which every said field of
  every object is right, nothing extra, and the background right.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from train.t2i.captions import CaptionSpec, ObjectSpec

FIELDS = ("shape", "colour", "size", "texture")


@dataclass(frozen=True)
class Adherence:
    named: int
    named_found: int
    sizes_said: int
    sizes_right: int
    textures_said: int
    textures_right: int
    count_right: bool
    background_said: bool
    background_right: bool
    exact: bool


def fits(spec: ObjectSpec, found: dict) -> bool:
    """Every field the spec says has the detected value."""
    return all(getattr(spec, f) is None or getattr(spec, f) == found[f] for f in FIELDS)


def _assignable(specs: tuple[ObjectSpec, ...], objects: list[dict]) -> bool:
    return any(all(fits(s, objects[j]) for s, j in zip(specs, chosen, strict=True))
               for chosen in itertools.permutations(range(len(objects)), len(specs)))


def score(spec: CaptionSpec, found: dict) -> Adherence:
    objects = found["objects"]
    by_name = {(o["shape"], o["colour"]): o for o in objects}
    named = [s for s in spec.objects if s.named]
    hits = [(s, by_name[(s.shape, s.colour)]) for s in named if (s.shape, s.colour) in by_name]
    sizes = [(s.size, o["size"]) for s, o in hits if s.size is not None]
    textures = [(s.texture, o["texture"]) for s, o in hits if s.texture is not None]
    count_right = len(objects) == spec.count
    bg = spec.background
    background_said = bg is not None and (bg.kind is not None or bg.tone is not None)
    background_right = not background_said or bg.accepts(found["background"], found["tone"])
    exact = count_right and background_right and _assignable(spec.objects, objects)
    return Adherence(len(named), len(hits), len(sizes), sum(a == b for a, b in sizes), len(textures),
                     sum(a == b for a, b in textures), count_right, background_said, background_right, exact)


# Why an image is not an exact match, the first that applies (t2i-eval counts them).
FAILURES = ("missing object", "extra object", "wrong object", "wrong size or texture", "wrong background")


def failure(spec: CaptionSpec, found: dict, adherence: Adherence) -> str | None:
    """None for an exact match, else the first of FAILURES that applies: too few or too many objects, as many
    but one not what was asked (shape or colour), the asked objects there but a size or texture wrong, or else
    the background."""
    if adherence.exact:
        return None
    objects = found["objects"]
    if len(objects) != spec.count:
        return FAILURES[0] if len(objects) < spec.count else FAILURES[1]
    shape_colour = tuple(ObjectSpec(o.shape, o.colour, None, None) for o in spec.objects)
    if not _assignable(shape_colour, objects):
        return FAILURES[2]
    return FAILURES[3] if not _assignable(spec.objects, objects) else FAILURES[4]


# The rates reported (numerator, denominator) from a list of Adherence records.
RATES = {
    "object_adherence": lambda a: (a.named_found, a.named),
    "exact_match": lambda a: (int(a.exact), 1),
    "size_accuracy": lambda a: (a.sizes_right, a.sizes_said),
    "texture_accuracy": lambda a: (a.textures_right, a.textures_said),
    "count_accuracy": lambda a: (int(a.count_right), 1),
    "background_accuracy": lambda a: (int(a.background_right), int(a.background_said)),
}
