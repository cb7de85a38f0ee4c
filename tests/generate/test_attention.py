"""Cross-attention capture: the images are those of a run without it, every cross-attention layer is recorded
at each step's first evaluation for the rows the plan evaluated, the norms are the maps' Frobenius norms, and
r_t (Ban et al. 2024, Eq. 6) is the ratio it defines; the CLI writes the plot and the numbers."""

from __future__ import annotations

import json

import pytest
import torch
from generate_helpers import SIZE, gen, wrap

from negguide.generate.attention import AttentionCapture, attention_probs

PROMPT, NEGATIVE = "a red car in a forest", "trees"


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_capture_leaves_the_images_unchanged_and_records_every_layer(pipes, family):
    pipe = wrap(pipes(family))
    kw = dict(mode="windowed", window=(2, 3), num_inference_steps=4, output_type="pt", **SIZE)
    plain = pipe([PROMPT] * 2, NEGATIVE, generator=gen(1, 2), **kw)
    captured = pipe([PROMPT] * 2, NEGATIVE, generator=gen(1, 2), capture_attention=True, **kw)
    assert torch.equal(plain.images, captured.images)
    rec = captured.attention
    cross = [n for n in pipe.pipe.unet.attn_processors if n.endswith("attn2.processor")]
    assert rec.steps == [0, 1, 2, 3] and len(rec.layers) == len(cross)
    assert set(pipe.pipe.unet.attn_processors.values()) == set(pipes(family).unet.attn_processors.values())
    for step in range(4):
        branches = {b for (s, b, i) in rec.norms if s == step}
        # the window (steps 2-3) puts the negative in the uncond slot; outside it the empty prompt
        assert branches == ({"positive", "negative"} if step in (1, 2) else {"positive", "empty"})
        assert all(len(rec.norms[(step, "positive", i)]) == len(cross) for i in range(2))
    strength = rec.strength("trees", "forest", image=1)
    assert torch.isnan(strength[[0, 3]]).all() and (strength[[1, 2]] > 0).all()


def test_norms_are_the_frobenius_norms_of_the_head_averaged_maps(sd_pipe):
    unet = sd_pipe.unet
    layer = next(m for n, m in unet.named_modules() if n.endswith("attn2"))
    hidden = torch.randn(3, 16, layer.to_q.in_features)
    text = torch.randn(3, 7, layer.to_k.in_features)
    probs = attention_probs(layer, hidden, text)
    assert probs.shape == (3, layer.heads, 16, 7)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, layer.heads, 16))
    capture = AttentionCapture(unet, (4, 4))
    capture.begin(0, (("positive", 0), ("negative", 0), ("positive", 1)))
    capture.record("layer", probs)
    expected = probs.mean(1).pow(2).sum(1).sqrt()
    torch.testing.assert_close(capture.norms[(0, "negative", 0)]["layer"], expected[1])
    torch.testing.assert_close(capture.norms[(0, "positive", 1)]["layer"], expected[2])


def test_strength_is_the_ratio_of_summed_layer_norms(sd_pipe):
    pipe = wrap(sd_pipe)
    out = pipe(PROMPT, NEGATIVE, num_inference_steps=3, generator=gen(2), output_type="pt", capture_attention=True,
               **SIZE)
    rec = out.attention
    neg, pos = rec.token_positions("negative", "trees"), rec.token_positions("positive", "forest")
    step = rec.steps[1]
    num = sum(v[neg].sum() for v in rec.norms[(step, "negative", 0)].values())
    den = sum(v[pos].sum() for v in rec.norms[(step, "positive", 0)].values())
    assert abs(float(rec.strength("trees", "forest")[1]) / float(num / den) - 1) < 1e-6  # float32 norms
    with pytest.raises(ValueError, match="'boat' is not in the negative prompt"):
        rec.token_positions("negative", "boat")
    assert out.plot_attention("trees", "forest") is not None


def test_sd3_is_refused_with_a_reason(sd3_pipe):
    with pytest.raises(ValueError, match="has none"):
        wrap(sd3_pipe)(PROMPT, NEGATIVE, num_inference_steps=2, capture_attention=True, **SIZE)


def test_cli_saves_the_plot_and_r_t(sd_pipe, tmp_path):
    from negguide.generate.cli import main

    model = tmp_path / "model"
    sd_pipe.save_pretrained(model)
    out = tmp_path / "out"
    assert main(["--model", str(model), "--prompt", PROMPT, "--negative", NEGATIVE, "--steps", "3", "--seed", "1",
                 "--width", "16", "--height", "16", "--attention", "trees:forest", "--out", str(out), "--quiet"]) == 0
    assert (out / "attention-00000.png").is_file()
    from PIL import Image

    meta = json.loads(Image.open(out / "00000-1.png").text["negguide"])
    assert meta["attention"]["words"] == ["trees", "forest"] and len(meta["attention"]["strength"]) == 3


def test_cli_refuses_attention_it_cannot_measure(tmp_path, capsys):
    from negguide.generate.cli import main

    code = main(["--model", str(tmp_path), "--prompt", PROMPT, "--negative", NEGATIVE, "--attention", "boat",
                 "--out", str(tmp_path / "o")])
    assert code == 2
