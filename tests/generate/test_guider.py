"""The diffusers guider against NegGuidePipeline on the tiny pipelines: a modular pipeline's denoise block in
miniature (set_state, prepare_inputs, prepare_models / the denoiser / cleanup_models per batch, the guider on the
batches' noise_pred, the scheduler's step) gives NegGuidePipeline's latents for every mode the interface
expresses, and refuses what it cannot (probe rows at other states) with a sentence. The guider calls the denoiser
once per branch where NegGuidePipeline stacks the rows into one call: in float64 the two agree to rounding."""

from __future__ import annotations

import pytest
import torch
from generate_helpers import NEGATIVE, PROMPT, SIZE, close, gen, wrap

from negguide import SettingsError
from negguide.generate import NegGuideGuider
from negguide.generate.loop import step_kwargs

STEPS = 4


@pytest.fixture(scope="module")
def pipes64():
    """Float64 copies of the tiny pipelines (the session's stay float32)."""
    from tiny_pipelines import BUILDERS, find_tokenizer_dir

    if find_tokenizer_dir() is None:
        pytest.skip("CLIP tokenizer files (shared/tokenizers/clip-vit-l-14) not present")

    built = {}

    def get(family):
        if family not in built:
            pipe = BUILDERS[family]().to(dtype=torch.float64)
            pipe.set_progress_bar_config(disable=True)
            built[family] = pipe
        return built[family]

    return get


def modular_loop(ng, guider: NegGuideGuider, seed: int = 7, triples: bool = True) -> torch.Tensor:
    """The latents of one generation, the guider driving the family's denoiser as diffusers' denoise blocks do."""
    family, pipe = ng.family, ng.pipe
    scheduler = pipe.scheduler
    guider.scheduler = scheduler
    height, width = SIZE["height"], SIZE["width"]
    timesteps = family.set_timesteps(STEPS, family.device, (height // pipe.vae_scale_factor,
                                                           width // pipe.vae_scale_factor))
    cond = family.conditioning([PROMPT], [NEGATIVE], 1, height=height, width=width)
    branches = ("positive", "negative", "empty") if triples else ("positive", "negative")
    fields = {name: tuple(cond[b][name] for b in branches) for name in cond["positive"]}
    if family.name == "sdxl":
        fields["time_ids"] = family._time_ids(height, width)  # shared by every batch
    generator = gen(seed)
    latents = family.prepare_latents(1, height, width, cond["positive"]["encoder_hidden_states"].dtype,
                                     family.device, generator)
    extra = step_kwargs(scheduler, generator, 0.0)
    scale = getattr(scheduler, "scale_model_input", None)
    for i, t in enumerate(timesteps):
        x_in = scale(latents, t) if scale is not None else latents
        guider.set_state(step=i, num_inference_steps=STEPS, timestep=t)
        batches = guider.prepare_inputs(fields)
        for batch in batches:
            guider.prepare_models(family.denoiser)
            batch.noise_pred = family.predict(x_in, t, {name: getattr(batch, name) for name in fields}, None)
            guider.cleanup_models(family.denoiser)
        latents = scheduler.step(guider(batches).pred, t, latents, **extra, return_dict=False)[0]
    guider.finish(latents)
    return latents


CASES = [("sd", "euler", "off", {}), ("sd", "euler", "windowed", {"window": (2, 3)}), ("sd", "euler_a", "np3", {}),
         ("sd", "ddim", "dns", {}), ("sd", "euler", "dns", {"dns_scale": 2.0}),
         ("sd", "euler_a", "dng", {"dng": {"lambda0": 3.0}}),
         ("sd", "euler", "dng", {"dng": {"tracker": "flow-moment"}}),
         ("sd", "heun", "dng", {"dng": {"tracker": "flow-moment"}}), ("sd", "euler", "sld", {}),
         ("sd", "euler", "perp_neg", {"perp_neg_scale": 0.7}), ("sdxl", "euler", "np3", {"window": (1, 2)}),
         ("sdxl", "euler_a", "dng", {}), ("sd3", "flow_euler", "perp_neg", {}),
         ("sd3", "flow_euler", "dng", {"dng": {"tracker": "flow-moment"}})]


@pytest.mark.parametrize("family, scheduler, mode, options", CASES)
def test_the_guider_in_a_modular_loop_is_negguidepipeline(pipes64, family, scheduler, mode, options):
    ng = wrap(pipes64(family), scheduler)
    ref = ng(PROMPT, NEGATIVE, mode=mode, guidance_scale=5.0, num_inference_steps=STEPS, generator=gen(7),
             output_type="latent", **SIZE, **options)
    guider = NegGuideGuider(mode=mode, guidance_scale=5.0, **options)
    close(modular_loop(ng, guider), ref.images, rtol=1e-9, atol=1e-9)
    if mode == "dng":
        assert guider.run.tracker_name() == ref.tracker
        lambdas = [r["lambda"] for r in guider.run.records if "lambda" in r]
        close(torch.tensor(lambdas, dtype=torch.float64), ref.lambdas, rtol=1e-9, atol=1e-9)


def test_the_stock_pairs_run_the_plain_negative_prompt_and_ask_for_the_empty_prompt_elsewhere(pipes64):
    ng = wrap(pipes64("sd"), "euler")
    ref = ng(PROMPT, NEGATIVE, guidance_scale=5.0, num_inference_steps=STEPS, generator=gen(7), output_type="latent",
             **SIZE)
    close(modular_loop(ng, NegGuideGuider(guidance_scale=5.0), triples=False), ref.images, rtol=1e-9, atol=1e-9)
    with pytest.raises(SettingsError, match="reads the empty prompt"):
        modular_loop(ng, NegGuideGuider(mode="np3", guidance_scale=5.0), triples=False)


@pytest.mark.parametrize("tracker", ["auto", "flow-hutchinson", "flow-gated"])
def test_probe_rows_at_other_states_are_refused(pipes, tracker):
    ng = wrap(pipes("sd"), "euler")
    with pytest.raises(SettingsError, match="Hutchinson probes"):
        modular_loop(ng, NegGuideGuider(mode="dng", dng={"tracker": tracker}))


def test_the_guider_saves_its_settings_as_a_diffusers_config(tmp_path):
    guider = NegGuideGuider(mode="dng", guidance_scale=4.0, dng={"lambda0": 2.0, "tracker": "transition"})
    guider.save_pretrained(tmp_path)
    again = NegGuideGuider.from_pretrained(tmp_path)
    assert again.spec == guider.spec and again.num_conditions == 3
    assert NegGuideGuider().num_conditions == 2 and NegGuideGuider(enabled=False).num_conditions == 1


@pytest.mark.parametrize("mode, options", [("off", {}), ("windowed", {"window": (2, 2)}), ("np3", {}),
                                           ("dng", {"dng": {"tracker": "flow-moment"}}), ("perp_neg", {})])
def test_diffusers_modular_sdxl_pipeline_with_the_guider_is_negguidepipeline(pipes64, mode, options):
    """diffusers' own modular SDXL pipeline (its blocks, its text encoding, its loop) with the guider; the empty
    prompt's embeddings (SDXL: zeros) given as the guider's empty_inputs, the stock blocks passing pairs."""
    from diffusers.modular_pipelines.stable_diffusion_xl.modular_blocks_stable_diffusion_xl import (
        StableDiffusionXLAutoBlocks,
    )

    ng = wrap(pipes64("sdxl"))
    modular = StableDiffusionXLAutoBlocks().init_pipeline()
    modular.update_components(**{k: v for k, v in ng.pipe.components.items() if v is not None})
    modular.set_progress_bar_config(disable=True)
    cond = ng.family.conditioning([PROMPT], [NEGATIVE], 1, **SIZE)
    guider = NegGuideGuider(mode=mode, guidance_scale=5.0, scheduler=modular.scheduler, **options)
    guider.empty_inputs = {"prompt_embeds": cond["empty"]["encoder_hidden_states"],
                           "text_embeds": cond["empty"]["text_embeds"], "time_ids": ng.family._time_ids(**SIZE)}
    modular.update_components(guider=guider)
    out = modular(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=3, generator=gen(0),
                  output="latents", **SIZE)
    ref = ng(PROMPT, NEGATIVE, mode=mode, guidance_scale=5.0, num_inference_steps=3, generator=gen(0),
             output_type="latent", **SIZE, **options)
    close(out, ref.images, rtol=1e-9, atol=1e-9)


def test_inputs_from_a_block_state_are_the_inputs_from_a_dict(pipes64):
    """Blocks that hand the guider their state and the field names get the same batches as from the fields."""
    from diffusers.modular_pipelines.modular_pipeline import BlockState

    ng = wrap(pipes64("sd"), "euler")
    guider = NegGuideGuider(mode="np3", guidance_scale=5.0, scheduler=ng.pipe.scheduler)
    ng.family.set_timesteps(STEPS, ng.family.device, (8, 8))
    p, n, e = (torch.full((1, 3), float(v), dtype=torch.float64) for v in (1, 2, 3))
    guider.set_state(step=0, num_inference_steps=STEPS, timestep=ng.pipe.scheduler.timesteps[0])
    from_dict = guider.prepare_inputs({"encoder_hidden_states": (p, n, e)})
    guider.set_state(step=0, num_inference_steps=STEPS, timestep=ng.pipe.scheduler.timesteps[0])
    state = BlockState(prompt_embeds=p, negative_prompt_embeds=n, empty_prompt_embeds=e)
    from_state = guider.prepare_inputs_from_block_state(
        state, {"encoder_hidden_states": ("prompt_embeds", "negative_prompt_embeds", "empty_prompt_embeds")})
    assert [b.encoder_hidden_states for b in from_state] == [b.encoder_hidden_states for b in from_dict] == [p, e, n]
