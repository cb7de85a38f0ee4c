"""What the nodes check when ComfyUI queues a prompt (``VALIDATE_INPUTS``), the empty prompt from the checkpoint's
CLIP, refusals that name the nodes a user placed, the log line of a pass whose negative never acted, and the model
sampling types of ComfyUI v0.33 (issue 22)."""

import math

import comfy.samplers as S
import pytest
import torch
from comfy.model_patcher import ModelPatcher
from comfy.model_sampling import IMG_TO_IMG_FLOW, V_PREDICTION_DDPM
from standin_runs import DNG, EMPTY, FLOW_SIGMAS, NEGATIVE, POSITIVE, WINDOW, ksampler, model, patch
from toy_model import ToyModel

import negguide_comfyui as pack
from negguide import Frame, SettingsError
from negguide_comfyui.model_kind import model_kind
from negguide_comfyui.modes import MODES

NODES = pack.NODE_CLASS_MAPPINGS
SOCKETS = {"model", "positive", "negative", "empty_conditioning", "clip"}


def widget_values(node) -> dict:
    """Every widget at its default, the sockets as ComfyUI passes linked inputs: None."""
    inputs = node.INPUT_TYPES()
    declared = {**inputs["required"], **inputs["optional"]}
    return {name: (None if name in SOCKETS else spec[1]["default"]) for name, spec in declared.items()
            if name in inputs["required"] or name in SOCKETS}


@pytest.mark.parametrize("name", sorted(n for n in NODES if n != "NegGuidePlot"))
def test_defaults_pass_and_nan_in_any_number_is_refused_at_queue_time(name):
    node = NODES[name]
    values = widget_values(node)
    assert node.VALIDATE_INPUTS(**values) is True
    numbers = [k for k, v in values.items() if isinstance(v, float)]
    assert numbers or name == "NegGuideDNSPatch"  # the DNS patch takes the sampler's cfg and nothing else
    for widget in numbers:
        answer = node.VALIDATE_INPUTS(**{**values, widget: math.nan})
        assert isinstance(answer, str) and f"{widget} must be a finite number, got nan" in answer
        assert answer.startswith(pack.NODE_DISPLAY_NAME_MAPPINGS[name] + ":")


@pytest.mark.parametrize("values, needle", [
    ({"window_start": 0.0}, "step windows count from step 1"),
    ({"window_start": -3.0}, "window_start must be in [0, 10000], got -3"),
    ({"window_unit": "seconds"}, "window_unit must be one of steps, fraction, sigma, got 'seconds'"),
    ({"cfg": math.inf}, "cfg must be a finite number"),
])
def test_what_comfyui_skips_for_a_validating_node_is_checked_here(values, needle):
    node = NODES["NegGuideWindowedGuider"]
    answer = node.VALIDATE_INPUTS(**{**widget_values(node), **values})
    assert isinstance(answer, str) and needle in answer


def test_a_node_without_any_empty_prompt_source_is_refused_at_queue_time():
    node = NODES["NegGuideDNGPatch"]
    values = {k: v for k, v in widget_values(node).items() if k not in ("empty_conditioning", "clip")}
    assert "connect the checkpoint's CLIP to 'clip'" in node.VALIDATE_INPUTS(**values)
    assert node.VALIDATE_INPUTS(**values, clip=None) is True  # linked: its value arrives when the prompt runs


def test_linked_widgets_are_checked_when_their_value_arrives():
    node = NODES["NegGuideSLDGuider"]
    values = {**widget_values(node), "threshold": None, "cfg": None}
    assert node.VALIDATE_INPUTS(**values) is True


class FakeCLIP:
    """ComfyUI's CLIP interface as CLIP Text Encode uses it; encodes "" to the stand-in's empty conditioning."""

    def __init__(self):
        self.texts = []

    def tokenize(self, text):
        self.texts.append(text)
        return {"l": [text]}

    def encode_from_tokens_scheduled(self, tokens):
        assert tokens == {"l": [""]}
        return [[EMPTY[0][0].clone(), {}]]


def test_the_empty_prompt_encoded_from_clip_is_the_connected_one_bit_for_bit():
    m = model()
    clip = FakeCLIP()
    given = patch("NegGuideDNGPatch", m, **DNG)[0]
    encoded = NODES["NegGuideDNGPatch"]().apply(m, clip=clip, **DNG)[0]
    assert clip.texts == [""]
    assert torch.equal(ksampler(encoded, sampler="euler_ancestral"), ksampler(given, sampler="euler_ancestral"))
    with pytest.raises(SettingsError, match="needs the empty prompt"):
        NODES["NegGuideWindowedPatch"]().apply(m, **WINDOW, window_start=1, window_end=2)


def test_refusals_name_the_guider_node_a_user_placed():
    dng = patch("NegGuideDNGPatch", model(), **DNG)[0]

    class Guider_Basic(S.CFGGuider):  # noqa: N801 (ComfyUI's class name for the BasicGuider node)
        pass

    class Guider_PerpNeg(S.CFGGuider):  # noqa: N801
        def predict_noise(self, x, timestep, model_options=None, seed=None):
            return x

    basic = Guider_Basic(dng)
    basic.inner_set_conds({"positive": POSITIVE})
    x = torch.zeros(2, 4, 4, 4)
    with pytest.raises(SettingsError, match="the BasicGuider node has no negative"):
        basic.sample(x, x, S.sampler_object("euler"), torch.tensor([14.6, 2.0, 0.0]), seed=1)
    perp = Guider_PerpNeg(dng)
    perp.set_conds(POSITIVE, NEGATIVE)
    with pytest.raises(SettingsError, match="the PerpNegGuider node computes its own guidance") as refused:
        perp.sample(x, x, S.sampler_object("euler"), torch.tensor([14.6, 2.0, 0.0]), seed=1)
    assert "Guider_" not in str(refused.value)


@pytest.mark.parametrize("node, values, reason", [
    ("NegGuideWindowedPatch", {**WINDOW, "window_start": 9, "window_end": 12}, "covers none of the pass's 4 steps"),
    ("NegGuideSLDPatch", {"threshold": 0.04, "scale": 100.0, "momentum_scale": 0.1, "momentum_beta": 0.2,
                          "warmup_steps": 4}, "warmup_steps (4) is not below the pass's 4 steps"),
])
def test_a_pass_whose_negative_never_acted_says_so_once(node, values, reason, caplog):
    patched, trace = patch(node, model(), **values)
    with caplog.at_level("WARNING", logger="negguide"):
        ksampler(patched)
    lines = [r.getMessage() for r in caplog.records if "never acted" in r.getMessage()]
    assert len(lines) == 1 and reason in lines[0]
    assert "the negative prompt never acted (" in trace.describe() and reason in trace.describe()


def test_a_pass_whose_negative_acted_logs_nothing(caplog):
    patched, trace = patch("NegGuideWindowedPatch", model(), **WINDOW, window_start=2, window_end=3)
    with caplog.at_level("WARNING", logger="negguide"):
        ksampler(patched)
    assert "never acted" not in caplog.text and "never acted" not in trace.describe()


def test_v_prediction_ddpm_is_the_k_diffusion_frame():
    kind = model_kind(ModelPatcher(ToyModel(sampling=V_PREDICTION_DDPM)))
    assert kind.frame == Frame.k_diffusion() and not kind.starts_from_image
    m = ModelPatcher(ToyModel(sampling=V_PREDICTION_DDPM))
    full = patch("NegGuideWindowedPatch", m, **WINDOW, window_start=1, window_end=4)[0]
    assert torch.equal(ksampler(full), ksampler(m))  # a window over every step is ComfyUI's CFG


def test_img_to_img_flow_refuses_the_modes_that_read_the_noise_level_and_runs_the_rest():
    m = ModelPatcher(ToyModel(sampling=IMG_TO_IMG_FLOW))
    assert model_kind(m).starts_from_image
    with pytest.raises(SettingsError, match="samples from an image, not from noise"):
        patch("NegGuideDNGPatch", m, **DNG)
    with pytest.raises(SettingsError, match="samples from an image, not from noise"):
        patch("NegGuideAdaptivePatch", m, window_unit="steps", window_start=1, window_end=3, signal="gap",
              threshold=0.5)
    full = patch("NegGuideWindowedPatch", m, **WINDOW, window_start=1, window_end=4)[0]
    assert torch.equal(ksampler(full, sigmas=FLOW_SIGMAS), ksampler(m, sigmas=FLOW_SIGMAS))
    none = patch("NegGuideAdaptivePatch", m, window_unit="steps", window_start=1, window_end=4, signal="none",
                 threshold=0.5)[0]
    assert torch.equal(ksampler(none, sigmas=FLOW_SIGMAS), ksampler(m, sigmas=FLOW_SIGMAS))


def test_every_mode_has_nodes():
    assert {f"NegGuide{m.key}Patch" for m in MODES} <= set(NODES)
