"""Diffusion-negative prompting: DNS image -> caption -> final image with the caption as negative prompt and the
same seed, with a plain callable captioner and with a tiny random transformers captioning model loaded by path
through ``transformers.pipeline`` (built from a config here, offline)."""

from __future__ import annotations

import numpy as np
import pytest
from generate_helpers import PROMPT, SIZE, gen, wrap

from negguide.generate import load_captioner

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "grass", "house", "red", "blue", "sky",
         "car", "tree", "dog"]


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    """A random BLIP captioner saved like a hub model (config, weights, processor, a 16-word BERT vocab)."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    folder = tmp_path_factory.mktemp("tiny-blip")
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), model_max_length=32)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    text = dict(vocab_size=len(WORDS), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=32, bos_token_id=2, sep_token_id=3, pad_token_id=0)
    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
                  patch_size=8)
    torch.manual_seed(0)
    BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=32)).eval() \
        .save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


def _pixels(images):
    return np.stack([np.asarray(im) for im in images])


def test_dnp_is_dns_then_caption_then_the_negative_prompt_with_the_same_seed(sd_pipe):
    ng = wrap(sd_pipe, "euler_a")
    seen = []

    def captioner(image):
        seen.append(image.size)
        return f"a picture number {len(seen)}"

    kw = dict(num_inference_steps=3, guidance_scale=5.0, **SIZE)
    out = ng.dnp([PROMPT, "a cat"], captioner=captioner, generator=gen(40, 2), **kw)
    assert out.dnp_prompts == ["a picture number 1", "a picture number 2"] and seen == [(16, 16)] * 2
    dns = ng([PROMPT, "a cat"], mode="dns", generator=gen(40, 2), **kw)
    np.testing.assert_array_equal(_pixels(out.dns_images), _pixels(dns.images))
    final = ng([PROMPT, "a cat"], out.dnp_prompts, mode="off", generator=gen(40, 2), **kw)
    np.testing.assert_array_equal(_pixels(out.images), _pixels(final.images))
    assert out.settings["dnp"]["captions"] == out.dnp_prompts and out.settings["dnp"]["captioner"] == "captioner"
    assert out.settings["dnp"]["dns_guidance"] == {"mode": "dns", "cfg_scale": 5.0, "dns_scale": 4.0}


def test_dnp_with_a_transformers_captioner_by_name(sd_pipe, tiny_blip):
    caption = load_captioner(tiny_blip, max_new_tokens=6)
    from PIL import Image

    text = caption(Image.new("RGB", (20, 20), (200, 30, 30)))
    assert isinstance(text, str) and set(text.split()) <= set(WORDS)
    ng = wrap(sd_pipe)
    out = ng.dnp(PROMPT, captioner=tiny_blip, generator=gen(3), num_inference_steps=2, num_images_per_prompt=2,
                 output_type="np", **SIZE)
    assert len(out.dnp_prompts) == 2 and out.images.shape == (2, 16, 16, 3)
    assert out.settings["dnp"]["captioner"] == tiny_blip
    again = ng.dnp(PROMPT, captioner=tiny_blip, generator=gen(3), num_inference_steps=2, num_images_per_prompt=2,
                   output_type="np", **SIZE)
    np.testing.assert_array_equal(out.images, again.images)  # a single generator seeds the per-image pairs
