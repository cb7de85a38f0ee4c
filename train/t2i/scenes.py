"""Procedural shapes scenes with exact labels: the data of negguide's text-to-image testbed.

A scene is a 32x32 RGB image: a background (one of five kinds in one of three tones) and 1-3 objects, each a
shape in a colour, a size and a texture, at a random position with bounded overlap. Everything is a pure
function of a seed; sampling and rendering are vectorised over the batch (torch, no files, no downloads).

    scenes = sample_scenes(torch.Generator().manual_seed(0), 256)
    images = render(scenes)          # uint8 (256, 3, 32, 32)

No two objects of a scene share both shape and colour, so "the red circle" always names one object; the
detector (train/t2i/detector.py) reads a scene back as exactly these labels.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields

import torch

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = ("red", "yellow", "green", "cyan", "blue", "purple")
SIZES = ("small", "large")
TEXTURES = ("plain", "striped", "dotted")
BACKGROUNDS = ("plain", "horizontal", "vertical", "checkered", "cloudy")  # horizontal/vertical: stripes
STRIPE_KINDS = ("horizontal", "vertical")
TONES = ("white", "grey", "black")
OBJECTS = tuple(itertools.product(SHAPES, COLOURS))  # object id = shape * len(COLOURS) + colour
MAX_OBJECTS = 3
IMAGE_SIZE = 32

COLOUR_RGB = {
    "red": (220, 45, 45), "yellow": (235, 205, 40), "green": (45, 170, 70),
    "cyan": (40, 195, 215), "blue": (45, 80, 225), "purple": (155, 60, 200),
}
TONE_RGB = {"white": (212, 212, 200), "grey": (125, 125, 125), "black": (38, 38, 44)}
RADIUS = {"small": 4.5, "large": 6.5}  # pixels: objects 9 and 13 pixels across
TEXTURE_SHADE = 0.42  # stripes and dots are the object's colour darkened to this fraction
BACKGROUND_CONTRAST = 28.0  # +- grey levels of stripes, checks and clouds around the tone
STRIPE_PERIOD = 4  # pixels, background stripes and checks as well as object stripes and dots
MIN_CENTRE_GAP = 0.8  # centres at least this fraction of the summed radii apart: bounded overlap
OBJECT_COUNT_WEIGHTS = (0.25, 0.40, 0.35)  # one, two, three objects
SUPERSAMPLE = 2  # shapes are drawn at 2x and averaged down: anti-aliased edges


def held_out_pairs(fraction: float = 0.1, seed: int = 1234) -> frozenset[tuple[int, int]]:
    """Pairs of objects (ids, smaller first) that never appear together in a training scene: the held-out
    combinations the quality bar is measured on. A fixed function of (fraction, seed)."""
    pairs = list(itertools.combinations(range(len(OBJECTS)), 2))
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(pairs), generator=g).tolist()
    return frozenset(pairs[i] for i in order[: round(fraction * len(pairs))])


def pair_mask(pairs) -> torch.Tensor:
    """Symmetric bool matrix (objects x objects), True for the given pairs."""
    n = len(OBJECTS)
    mask = torch.zeros(n, n, dtype=torch.bool)
    for a, b in pairs:
        mask[a, b] = mask[b, a] = True
    return mask


@dataclass
class Scenes:
    """Labels of a batch of scenes. Object slots beyond `count` hold -1 (ids) or 0 (positions)."""

    count: torch.Tensor  # (B,) int64, 1..MAX_OBJECTS
    obj: torch.Tensor  # (B, MAX_OBJECTS) int64 object id (shape * len(COLOURS) + colour), -1 absent
    size: torch.Tensor  # (B, MAX_OBJECTS) int64 index into SIZES, -1 absent
    texture: torch.Tensor  # (B, MAX_OBJECTS) int64 index into TEXTURES, -1 absent
    centre: torch.Tensor  # (B, MAX_OBJECTS, 2) float32 (x, y) in pixels
    background: torch.Tensor  # (B,) int64 index into BACKGROUNDS
    tone: torch.Tensor  # (B,) int64 index into TONES
    clouds: torch.Tensor  # (B, 5, 5) float32 in [-1, 1]: the low-frequency field of cloudy backgrounds

    def __len__(self) -> int:
        return int(self.count.shape[0])

    def __getitem__(self, index) -> Scenes:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Scenes(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @property
    def present(self) -> torch.Tensor:
        """(B, MAX_OBJECTS) bool: which slots hold an object."""
        return self.obj >= 0

    @property
    def shape(self) -> torch.Tensor:
        return torch.where(self.present, self.obj // len(COLOURS), -1)

    @property
    def colour(self) -> torch.Tensor:
        return torch.where(self.present, self.obj % len(COLOURS), -1)

    def describe(self, i: int) -> dict:
        """Scene i as plain Python: what a test or a report prints."""
        objects = [
            {"shape": SHAPES[int(self.shape[i, k])], "colour": COLOURS[int(self.colour[i, k])],
             "size": SIZES[int(self.size[i, k])], "texture": TEXTURES[int(self.texture[i, k])],
             "centre": [round(float(v), 2) for v in self.centre[i, k]]}
            for k in range(MAX_OBJECTS) if self.obj[i, k] >= 0
        ]
        return {"objects": objects, "background": BACKGROUNDS[int(self.background[i])],
                "tone": TONES[int(self.tone[i])]}

    @staticmethod
    def cat(parts: list[Scenes]) -> Scenes:
        return Scenes(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Scenes)})


def _draw_objects(g: torch.Generator, n: int, excluded: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, obj ids) for n scenes; ids distinct within a scene, no excluded pair together."""
    weights = torch.tensor(OBJECT_COUNT_WEIGHTS)
    count = torch.multinomial(weights, n, replacement=True, generator=g) + 1
    obj = torch.rand(n, len(OBJECTS), generator=g).argsort(dim=1)[:, :MAX_OBJECTS]
    slot = torch.arange(MAX_OBJECTS)
    obj = torch.where(slot < count[:, None], obj, -1)
    if excluded is None:
        return count, obj
    for _ in range(100):  # rejection: about 10% of two- and three-object scenes hold an excluded pair
        bad = _holds_pair(obj, excluded)
        if not bad.any():
            return count, obj
        c, o = _draw_objects(g, int(bad.sum()), None)
        count[bad], obj[bad] = c, o
    raise RuntimeError("could not draw scenes without the excluded pairs")  # pragma: no cover


def _holds_pair(obj: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the scene holds two objects that form an excluded pair."""
    bad = torch.zeros(obj.shape[0], dtype=torch.bool)
    for a, b in itertools.combinations(range(MAX_OBJECTS), 2):
        both = (obj[:, a] >= 0) & (obj[:, b] >= 0)
        bad |= both & excluded[obj[:, a].clamp(min=0), obj[:, b].clamp(min=0)]
    return bad


def _draw_centres(g: torch.Generator, radius: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """(B, MAX_OBJECTS, 2) centres inside the image, present objects at least MIN_CENTRE_GAP x their summed
    radii apart (rejection per scene)."""
    n = radius.shape[0]
    centre = torch.zeros(n, MAX_OBJECTS, 2)
    todo = torch.ones(n, dtype=torch.bool)
    for _ in range(200):
        idx = todo.nonzero().squeeze(1)
        if len(idx) == 0:
            return centre * present[..., None]
        r = radius[idx]
        lo, hi = r + 0.5, IMAGE_SIZE - r - 0.5
        c = lo[..., None] + (hi - lo)[..., None] * torch.rand(len(idx), MAX_OBJECTS, 2, generator=g)
        ok = torch.ones(len(idx), dtype=torch.bool)
        for a, b in itertools.combinations(range(MAX_OBJECTS), 2):
            both = present[idx, a] & present[idx, b]
            gap = (c[:, a] - c[:, b]).norm(dim=1)
            ok &= ~both | (gap >= MIN_CENTRE_GAP * (r[:, a] + r[:, b]))
        centre[idx[ok]] = c[ok]
        todo[idx[ok]] = False
    raise RuntimeError("could not place the objects")  # pragma: no cover


def sample_scenes(g: torch.Generator, n: int, exclude_pairs=None) -> Scenes:
    """n random scenes. `exclude_pairs`: object pairs (see :func:`held_out_pairs`) that must not appear
    together. Deterministic in `g`'s state."""
    excluded = None if not exclude_pairs else pair_mask(exclude_pairs)
    count, obj = _draw_objects(g, n, excluded)
    present = obj >= 0
    size = torch.randint(0, len(SIZES), (n, MAX_OBJECTS), generator=g)
    texture = torch.randint(0, len(TEXTURES), (n, MAX_OBJECTS), generator=g)
    radius_of = torch.tensor([RADIUS[s] for s in SIZES])
    centre = _draw_centres(g, radius_of[size] * present, present)
    background = torch.randint(0, len(BACKGROUNDS), (n,), generator=g)
    tone = torch.randint(0, len(TONES), (n,), generator=g)
    clouds = torch.rand(n, 5, 5, generator=g) * 2 - 1
    return Scenes(count, obj, torch.where(present, size, -1), torch.where(present, texture, -1), centre,
                  background, tone, clouds)


def _index_or_draw(names: tuple[str, ...], name: str | None, g: torch.Generator) -> int:
    return names.index(name) if name else int(torch.randint(len(names), (1,), generator=g))


def scenes_like(objects: list[dict], background: str | None, tone: str | None, n: int,
                g: torch.Generator) -> Scenes:
    """n scenes that fit a description: `objects` are dicts with keys shape, colour, size, texture, each a
    name or None (None: drawn at random; a shape or colour left open never repeats a named object's pair);
    `background` one of BACKGROUNDS, "striped" (either orientation) or None; `tone` or None. Positions and
    everything left open are drawn from `g`: renders "of the same caption"."""
    k = len(objects)
    if not 1 <= k <= MAX_OBJECTS:
        raise ValueError(f"a scene holds 1 to {MAX_OBJECTS} objects, got {k}")
    scenes = sample_scenes(g, n)
    obj = torch.full((n, MAX_OBJECTS), -1, dtype=torch.long)
    size = torch.full_like(obj, -1)
    texture = torch.full_like(obj, -1)
    for i in range(n):
        taken: set[int] = set()
        for slot, o in enumerate(objects):
            ok = [j for j, (sh, co) in enumerate(OBJECTS) if j not in taken and o.get("shape") in (None, sh)
                  and o.get("colour") in (None, co)]
            if not ok:
                raise ValueError(f"no object left that fits {o}")
            j = ok[int(torch.randint(len(ok), (1,), generator=g))] if len(ok) > 1 else ok[0]
            taken.add(j)
            obj[i, slot] = j
            size[i, slot] = _index_or_draw(SIZES, o.get("size"), g)
            texture[i, slot] = _index_or_draw(TEXTURES, o.get("texture"), g)
    present = obj >= 0
    radius_of = torch.tensor([RADIUS[s] for s in SIZES])
    centre = _draw_centres(g, radius_of[size.clamp(min=0)] * present, present)
    if background == "striped":
        kind = torch.tensor([BACKGROUNDS.index(STRIPE_KINDS[int(v)]) for v in torch.randint(2, (n,), generator=g)])
    elif background is not None:
        kind = torch.full((n,), BACKGROUNDS.index(background))
    else:
        kind = scenes.background
    tones = torch.full((n,), TONES.index(tone)) if tone is not None else scenes.tone
    return Scenes(torch.full((n,), k), obj, size, texture, centre, kind, tones, scenes.clouds)


def shape_mask(shape: int, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Inside-mask of SHAPES[shape] at offsets (dx, dy) from its centre (y down), radius r."""
    ax, ay = dx.abs(), dy.abs()
    if SHAPES[shape] == "circle":
        return dx**2 + dy**2 <= r**2
    if SHAPES[shape] == "square":
        return torch.maximum(ax, ay) <= 0.82 * r
    if SHAPES[shape] == "triangle":  # apex up at -1.1 r, base at +0.8 r, 2.2 r wide: about a circle's area
        return (dy <= 0.8 * r) & (ax <= 1.1 * (dy + 1.1 * r) / 1.9)
    if SHAPES[shape] == "diamond":
        return ax + ay <= 1.15 * r
    arm = 0.36 * r  # cross
    return ((ax <= arm) & (ay <= r)) | ((ay <= arm) & (ax <= r))


def texture_dark(texture: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Where the texture darkens the object: diagonal stripes, or round dots on a grid centred on the object."""
    period = STRIPE_PERIOD
    stripes = torch.remainder(dx + dy, period) < period / 2
    u = torch.remainder(dx + period / 2, period) - period / 2
    v = torch.remainder(dy + period / 2, period) - period / 2
    dots = u**2 + v**2 <= 1.05**2
    return ((texture == TEXTURES.index("striped")) & stripes) | ((texture == TEXTURES.index("dotted")) & dots)


def backgrounds(scenes: Scenes) -> torch.Tensor:
    """(B, 32, 32, 3) float background colours, one value per pixel (patterns are pixel-aligned)."""
    side, half = IMAGE_SIZE, STRIPE_PERIOD // 2
    i = torch.arange(side)
    yi, xi = i[:, None].expand(side, side), i[None, :].expand(side, side)
    pattern = torch.stack([
        torch.zeros(side, side),  # plain
        torch.where((yi % STRIPE_PERIOD) < half, 1.0, -1.0),  # horizontal stripes
        torch.where((xi % STRIPE_PERIOD) < half, 1.0, -1.0),  # vertical stripes
        torch.where(((yi // half + xi // half) % 2) == 0, 1.0, -1.0),  # checkered
        torch.zeros(side, side),  # cloudy: filled below
    ])
    field = pattern[scenes.background]  # (B, H, W)
    cloudy = scenes.background == BACKGROUNDS.index("cloudy")
    if cloudy.any():
        smooth = torch.nn.functional.interpolate(scenes.clouds[cloudy][:, None], size=(side, side), mode="bicubic",
                                                 align_corners=False)[:, 0]
        field[cloudy] = smooth.clamp(-1, 1)
    tone = torch.tensor([TONE_RGB[t] for t in TONES], dtype=torch.float32)[scenes.tone]  # (B, 3)
    return tone[:, None, None, :] + BACKGROUND_CONTRAST * field[..., None]


PATCH = 16  # output pixels around an object's centre that hold all of it (radius <= 6.5 x 1.15)


def render(scenes: Scenes) -> torch.Tensor:
    """uint8 images (B, 3, 32, 32) of the scenes: objects painted in slot order over the background, each in
    its own 16x16-pixel patch at 2x resolution, then averaged down (anti-aliased edges)."""
    ss = SUPERSAMPLE
    image = backgrounds(scenes).repeat_interleave(ss, 1).repeat_interleave(ss, 2)  # (B, 64, 64, 3)
    colour_rgb = torch.tensor([COLOUR_RGB[c] for c in COLOURS], dtype=torch.float32)
    radius_of = torch.tensor([RADIUS[s] for s in SIZES])
    steps = (torch.arange(PATCH * ss, dtype=torch.float32) + 0.5) / ss  # sub-pixel centres in a patch
    for k in range(MAX_OBJECTS):
        idx = (scenes.obj[:, k] >= 0).nonzero().squeeze(1)
        if len(idx) == 0:
            continue
        centre = scenes.centre[idx, k]  # (b, 2) x, y
        origin = (centre.floor().long() - PATCH // 2).clamp(0, IMAGE_SIZE - PATCH)  # patch corner, pixels
        dx = (origin[:, 0, None] + steps)[:, None, :] - centre[:, 0, None, None]  # (b, 1, P)
        dy = (origin[:, 1, None] + steps)[:, :, None] - centre[:, 1, None, None]  # (b, P, 1)
        dx, dy = dx.expand(-1, PATCH * ss, -1), dy.expand(-1, -1, PATCH * ss)
        r = radius_of[scenes.size[idx, k]][:, None, None]
        shape = scenes.obj[idx, k] // len(COLOURS)
        inside = torch.zeros(dx.shape, dtype=torch.bool)
        for s in shape.unique().tolist():
            sel = shape == s
            inside[sel] = shape_mask(s, dx[sel], dy[sel], r[sel])
        dark = texture_dark(scenes.texture[idx, k][:, None, None], dx, dy)
        rgb = colour_rgb[scenes.obj[idx, k] % len(COLOURS)][:, None, None, :]
        paint = torch.where(dark[..., None], rgb * TEXTURE_SHADE, rgb)
        rows = (origin[:, 1, None] * ss + torch.arange(PATCH * ss))[:, :, None]
        cols = (origin[:, 0, None] * ss + torch.arange(PATCH * ss))[:, None, :]
        at = (idx[:, None, None], rows, cols)
        image[at] = torch.where(inside[..., None], paint, image[at])
    image = torch.nn.functional.avg_pool2d(image.permute(0, 3, 1, 2), ss)
    return image.round().clamp(0, 255).to(torch.uint8)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1] (what the VAE, the detector and the diffusion model read)."""
    return images.float().div(127.5).sub(1.0)


def from_unit(images: torch.Tensor) -> torch.Tensor:
    """float images in [-1, 1] -> uint8."""
    return images.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)
