"""The testbed's scenes: deterministic, labels that match the pixels, bounded overlap, held-out pairs kept out."""

import itertools

import torch

from train.t2i.scenes import (
    BACKGROUND_CONTRAST,
    BACKGROUNDS,
    COLOUR_RGB,
    COLOURS,
    MAX_OBJECTS,
    MIN_CENTRE_GAP,
    OBJECTS,
    RADIUS,
    SHAPES,
    SIZES,
    TEXTURE_SHADE,
    TEXTURES,
    TONE_RGB,
    TONES,
    held_out_pairs,
    render,
    sample_scenes,
    scenes_like,
)


def _scenes(n, seed=0, **kwargs):
    return sample_scenes(torch.Generator().manual_seed(seed), n, **kwargs)


def test_scenes_and_images_are_a_function_of_the_seed():
    a, b, c = _scenes(64, 1), _scenes(64, 1), _scenes(64, 2)
    assert torch.equal(render(a), render(b))
    assert not torch.equal(render(a), render(c))
    assert render(a).dtype == torch.uint8 and render(a).shape == (64, 3, 32, 32)


def test_labels_are_consistent():
    s = _scenes(2000)
    assert ((s.count >= 1) & (s.count <= MAX_OBJECTS)).all()
    assert torch.equal(s.present.sum(1), s.count)
    for i in range(len(s)):
        ids = [int(o) for o in s.obj[i] if o >= 0]
        assert len(ids) == len(set(ids)), "two objects of one scene share shape and colour"
    assert set(s.background.tolist()) == set(range(len(BACKGROUNDS)))
    assert set(s.tone.tolist()) == set(range(len(TONES)))
    assert set(s.texture[s.present].tolist()) == set(range(len(TEXTURES)))
    assert set(s.obj[s.present].tolist()) == set(range(len(OBJECTS)))


def test_objects_stay_inside_the_image_and_apart():
    s = _scenes(3000)
    radius = torch.tensor([RADIUS[n] for n in SIZES])[s.size.clamp(min=0)]
    inside = (s.centre - radius[..., None] >= 0) & (s.centre + radius[..., None] <= 32)
    assert inside[s.present].all()
    for a, b in itertools.combinations(range(MAX_OBJECTS), 2):
        both = s.present[:, a] & s.present[:, b]
        gap = (s.centre[:, a] - s.centre[:, b]).norm(dim=1)
        assert (gap[both] >= MIN_CENTRE_GAP * (radius[both, a] + radius[both, b]) - 1e-4).all()


def test_held_out_pairs_never_appear_together_when_excluded():
    held = held_out_pairs()
    assert len(held) == round(0.1 * len(OBJECTS) * (len(OBJECTS) - 1) / 2)
    s = _scenes(5000, exclude_pairs=held)
    for i in range(len(s)):
        ids = sorted(int(o) for o in s.obj[i] if o >= 0)
        assert not any(pair in held for pair in itertools.combinations(ids, 2))
    unrestricted = _scenes(5000)
    assert any(pair in held for i in range(len(unrestricted))
               for pair in itertools.combinations(sorted(int(o) for o in unrestricted.obj[i] if o >= 0), 2))


def _one_object(shape, colour, texture, background="plain", tone="grey", size="large"):
    scene = {"shape": shape, "colour": colour, "size": size, "texture": texture}
    return scenes_like([scene], background, tone, 1, torch.Generator().manual_seed(3))


def test_pixels_show_the_labels():
    """At a plain object's centre the pixel is its colour; a striped or dotted object holds both its colour
    and its darkened shade; far from the object the background is its tone within the pattern's contrast."""
    for shape, colour in itertools.product(SHAPES, COLOURS):
        s = _one_object(shape, colour, "plain")
        image = render(s)[0].permute(1, 2, 0).int()
        x, y = (int(v) for v in s.centre[0, 0])
        assert image[y, x].tolist() == list(COLOUR_RGB[colour]), (shape, colour)
        pixels = image.reshape(-1, 3)
        exact = (pixels == torch.tensor(COLOUR_RGB[colour])).all(1).sum()
        assert 40 <= exact <= 200, f"{colour} {shape}: {exact} pixels of its colour"
    for texture in ("striped", "dotted"):
        s = _one_object("square", "red", texture)
        pixels = render(s)[0].permute(1, 2, 0).reshape(-1, 3).int()
        dark = torch.tensor([round(v * TEXTURE_SHADE) for v in COLOUR_RGB["red"]])
        assert (pixels == torch.tensor(COLOUR_RGB["red"])).all(1).sum() >= 10
        assert (pixels == dark).all(1).sum() >= 4, texture
    s = _one_object("circle", "blue", "plain", background="horizontal", tone="white", size="small")
    image = render(s)[0].permute(1, 2, 0).int()
    tone = torch.tensor(TONE_RGB["white"])
    corner = image[0, 0] if s.centre[0, 0, 0] > 16 or s.centre[0, 0, 1] > 16 else image[31, 31]
    assert (corner - tone).abs().max() == BACKGROUND_CONTRAST


def test_renders_are_fast():
    """Thousands of images per second on one core (the training loop draws every batch fresh)."""
    import time

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        s = _scenes(512)
        render(s)
        started = time.perf_counter()
        render(_scenes(1024, 5))
        rate = 1024 / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    assert rate > 1000, f"{rate:.0f} images/s"
