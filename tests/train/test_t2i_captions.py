"""Captions say only what the scene shows and parse back to it; the tokenizer gives each word one token;
adherence scores a scene's own labels as exact and another scene's as not."""

import pytest
import torch

from train.t2i.adherence import score
from train.t2i.captions import (
    EVALUATION,
    VOCABULARY,
    BackgroundSpec,
    CaptionError,
    CaptionSpec,
    ObjectSpec,
    captions_for,
    full_caption,
    parse,
    spec_text,
)
from train.t2i.detector import detection_caption, scene_detection
from train.t2i.scenes import sample_scenes
from train.t2i.stats import cluster_bootstrap
from train.t2i.tokenizer import MAX_LENGTH, load_tokenizer, save_tokenizer


def _scenes(n, seed=0):
    return sample_scenes(torch.Generator().manual_seed(seed), n)


def scene_spec(scenes, i):
    """Everything about scene i as a spec (every field said): the ground truth a caption is checked against."""
    d = scenes.describe(i)
    objects = tuple(ObjectSpec(o["shape"], o["colour"], o["size"], o["texture"]) for o in d["objects"])
    return CaptionSpec(objects, BackgroundSpec(d["background"], d["tone"]))


def _fits(said: ObjectSpec, true: ObjectSpec) -> bool:
    return all(getattr(said, f) in (None, getattr(true, f)) for f in ("shape", "colour", "size", "texture"))


@pytest.mark.parametrize("style", ["training", "evaluation"])
def test_every_caption_parses_to_what_its_scene_shows(style):
    scenes = _scenes(3000, 1)
    captions = captions_for(scenes, 7, EVALUATION) if style == "evaluation" else captions_for(scenes, 7)
    templates = set()
    for i, text in enumerate(captions):
        said, true = parse(text), scene_spec(scenes, i)
        assert said.count == true.count, text
        assert all(any(_fits(o, t) for t in true.objects) for o in said.objects), text
        if said.background is not None:
            assert said.background.accepts(true.background.kind, true.background.tone), text
        if style == "evaluation":
            assert all(o.named for o in said.objects) and said.background is not None, text
        templates.add("list" if " and " not in text and "," in text else "with" if " with " in text else "other")
    assert templates == {"list", "with", "other"}
    assert len(set(captions)) > 0.9 * len(captions)


def test_examples_of_the_issue_parse():
    spec = parse("a red circle and a small blue square on a striped background")
    assert spec == CaptionSpec((ObjectSpec("circle", "red"), ObjectSpec("square", "blue", "small")),
                               BackgroundSpec("striped"))
    assert parse("blue square, red circle, stripes").background == BackgroundSpec("striped")
    assert parse("three shapes on vertical stripes") == CaptionSpec((ObjectSpec(),) * 3, BackgroundSpec("vertical"))
    assert parse("a grey checkered background with a dotted green cross").objects == (
        ObjectSpec("cross", "green", texture="dotted"),)
    assert parse("a red shape").objects == (ObjectSpec(colour="red"),)


@pytest.mark.parametrize("text, why", [
    ("a red car", "not in the testbed's vocabulary: car"),
    ("a red circle and a red circle", "the same object twice"),
    ("a red blue circle", "two colours"),
    ("a red circle, a blue square, a green cross and a cyan diamond", "1 to 3 objects"),
    ("a red circle on stripes on a cloudy background", "two backgrounds"),
    ("a red", "names no shape"),
])
def test_text_outside_the_language_is_refused_with_the_reason(text, why):
    with pytest.raises(CaptionError, match=why):
        parse(text)


def test_spec_text_round_trips():
    scenes = _scenes(500, 2)
    for i in range(len(scenes)):
        spec = scene_spec(scenes, i)
        assert parse(spec_text(spec)) == spec
        partial = parse(captions_for(scenes[i], i)[0])
        assert parse(spec_text(partial)) == partial


def test_tokenizer_one_token_per_word_and_captions_fit(tmp_path):
    tokenizer = load_tokenizer(save_tokenizer(tmp_path))
    assert [w for w in VOCABULARY if len(tokenizer.tokenize(w)) != 1] == []
    lengths = [len(tokenizer(c).input_ids) for c in captions_for(_scenes(5000, 3), 0)]
    assert max(lengths) <= MAX_LENGTH
    ids = tokenizer("a red circle", padding="max_length", max_length=MAX_LENGTH).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[4:] == [tokenizer.eos_token_id] * (MAX_LENGTH - 4)


def test_adherence_exact_on_own_labels_and_not_on_others():
    scenes = _scenes(400, 4)
    captions = captions_for(scenes, 5, EVALUATION)
    found = [scene_detection(scenes, i) for i in range(len(scenes))]
    own = [score(parse(c), f) for c, f in zip(captions, found, strict=True)]
    assert all(a.exact and a.named_found == a.named for a in own)
    shifted = [score(parse(c), f) for c, f in zip(captions, found[1:] + found[:1], strict=True)]
    assert sum(a.exact for a in shifted) < 0.05 * len(shifted)
    extra = {**found[0], "objects": found[0]["objects"] + [{"shape": "cross", "colour": "cyan", "size": "small",
                                                              "texture": "plain"}]}
    if ("cross", "cyan") not in {(o["shape"], o["colour"]) for o in found[0]["objects"]}:
        assert not score(parse(captions[0]), extra).exact  # nothing extra


def test_detection_captions_parse_back_to_the_detection():
    scenes = _scenes(200, 6)
    for i in range(len(scenes)):
        found = scene_detection(scenes, i)
        assert parse(detection_caption(found)) == scene_spec(scenes, i).__class__(
            tuple(ObjectSpec(**o) for o in found["objects"]), BackgroundSpec(found["background"], found["tone"]))
    assert full_caption({"objects": [], "background": "cloudy", "tone": "black"}) == "a black cloudy background"


def test_cluster_bootstrap_interval_covers_and_respects_clusters():
    rate = cluster_bootstrap([1, 0, 1, 1], [1, 1, 1, 1], [0, 0, 1, 1])
    assert rate.value == 0.75 and rate.low <= 0.75 <= rate.high and rate.clusters == 2
    assert cluster_bootstrap([3] * 10, [4] * 10, range(10)).low == 0.75  # no spread: the interval is the point


def test_captions_keep_the_three_most_probable_objects():
    import torch

    from train.t2i.detector import HEADS, N_OBJ, Detector, image_captions
    from train.t2i.scenes import OBJECTS

    logits = {"presence": torch.full((1, N_OBJ), -5.0), "size": torch.zeros(1, N_OBJ, 2),
              "texture": torch.zeros(1, N_OBJ, 3), "background": torch.zeros(1, HEADS["background"]),
              "tone": torch.zeros(1, HEADS["tone"])}
    logits["presence"][0, :4] = torch.tensor([1.0, 3.0, 2.0, 4.0])  # four objects found; the first least sure

    class Fixed(Detector):
        def forward(self, x):
            return logits

    detector = Fixed(width=4)
    assert len(detector.detect(torch.zeros(1, 3, 32, 32))[0]["objects"]) == 4
    kept = parse(image_captions(detector, torch.zeros(1, 3, 32, 32))[0])  # in the language: <= 3 objects
    assert {(o.shape, o.colour) for o in kept.objects} == set(OBJECTS[1:4])


def test_each_failure_is_named_by_its_first_reason():
    from train.t2i.adherence import failure

    spec = parse("a small red circle and a striped blue square on a white checkered background")
    red = {"shape": "circle", "colour": "red", "size": "small", "texture": "plain"}
    blue = {"shape": "square", "colour": "blue", "size": "large", "texture": "striped"}
    green = {"shape": "cross", "colour": "green", "size": "small", "texture": "plain"}

    def why(objects, background="checkered", tone="white"):
        found = {"objects": objects, "background": background, "tone": tone}
        return failure(spec, found, score(spec, found))

    assert why([red, blue]) is None
    assert why([red]) == "missing object"
    assert why([red, blue, green]) == "extra object"
    assert why([red, green]) == "wrong object"
    assert why([{**red, "size": "large"}, blue]) == "wrong size or texture"
    assert why([red, blue], tone="black") == "wrong background"
