"""The node definitions ComfyUI reads (inputs, outputs, names), and the repository root as a custom node."""

import importlib.util
from pathlib import Path

import pytest

import negguide_comfyui as pack
from negguide import AdaptiveStart, GuidanceSpec, StepWindow
from negguide.configs import ADAPTIVE_SIGNALS, TRACKERS, VARIANCES, DNGConfig, SLDConfig
from negguide_comfyui.modes import MODES

ROOT = Path(__file__).resolve().parents[2]
GUIDERS = [f"NegGuide{m.key}Guider" for m in MODES]
PATCHES = [f"NegGuide{m.key}Patch" for m in MODES]


def test_every_mode_has_a_guider_a_patch_and_a_display_name():
    assert set(pack.NODE_CLASS_MAPPINGS) == {*GUIDERS, *PATCHES, "NegGuidePlot"}
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    assert all(name.endswith("(negguide)") for name in pack.NODE_DISPLAY_NAME_MAPPINGS.values())


@pytest.mark.parametrize("name", sorted(pack.NODE_CLASS_MAPPINGS))
def test_node_interface(name):
    node = pack.NODE_CLASS_MAPPINGS[name]
    inputs = node.INPUT_TYPES()
    assert set(inputs) <= {"required", "optional"}
    assert len(node.RETURN_TYPES) == len(node.RETURN_NAMES) == len(node.OUTPUT_TOOLTIPS)
    assert callable(getattr(node(), node.FUNCTION)) and node.CATEGORY and len(node.DESCRIPTION) > 40
    for spec in [*inputs["required"].values(), *inputs.get("optional", {}).values()]:
        kind = spec[0]
        assert spec[1]["tooltip"], spec  # widgets and sockets explain themselves
        if kind in ("FLOAT", "INT"):
            assert spec[1]["min"] <= spec[1]["default"] <= spec[1]["max"]


def test_guider_and_patch_inputs():
    """The empty prompt is optional (given, or encoded from the optional CLIP); every other input and widget keeps
    its name and order, so exported workflows load (a workflow stores its widgets' values by position)."""
    windowed = pack.NODE_CLASS_MAPPINGS["NegGuideWindowedGuider"].INPUT_TYPES()
    assert list(windowed["required"]) == ["model", "positive", "negative", "cfg", "form", "window_unit",
                                          "window_start", "window_end"]
    assert list(windowed["optional"]) == ["empty_conditioning", "clip"]
    dns = pack.NODE_CLASS_MAPPINGS["NegGuideDNSGuider"].INPUT_TYPES()["required"]
    assert list(dns) == ["model", "positive", "dns_scale"]
    patch = pack.NODE_CLASS_MAPPINGS["NegGuideDNGPatch"].INPUT_TYPES()
    assert list(patch["required"]) == ["model", "lambda0", "prior", "temperature", "offset", "p_max", "tracker"]
    assert list(patch["optional"]) == ["empty_conditioning", "clip", "probe_pairs", "probe_directions", "variance"]
    adaptive = pack.NODE_CLASS_MAPPINGS["NegGuideAdaptivePatch"].INPUT_TYPES()["required"]
    assert list(adaptive) == ["model", "window_unit", "window_start", "window_end", "signal", "threshold"]
    assert pack.NODE_CLASS_MAPPINGS["NegGuideDNGGuider"].RETURN_TYPES == ("GUIDER", "NEGGUIDE_TRACE")
    assert pack.NODE_CLASS_MAPPINGS["NegGuideDNGPatch"].RETURN_TYPES == ("MODEL", "NEGGUIDE_TRACE")


def test_widget_defaults_and_choices_are_the_cores():
    dng = pack.NODE_CLASS_MAPPINGS["NegGuideDNGPatch"].INPUT_TYPES()
    defaults, core = {k: v[1]["default"] for k, v in {**dng["required"], **dng["optional"]}.items()
                      if k not in ("model", "empty_conditioning", "clip")}, DNGConfig()
    assert defaults == {"lambda0": core.lambda0, "prior": core.prior, "temperature": core.temperature,
                        "offset": core.offset, "p_max": core.p_max, "tracker": "auto",
                        "probe_pairs": core.probe_pairs, "probe_directions": core.probe_directions,
                        "variance": core.variance}
    assert dng["required"]["tracker"][0] == list(TRACKERS) and dng["optional"]["variance"][0] == list(VARIANCES)
    sld = pack.NODE_CLASS_MAPPINGS["NegGuideSLDPatch"].INPUT_TYPES()["required"]
    core = SLDConfig()
    assert [sld[k][1]["default"] for k in ("threshold", "scale", "momentum_scale", "momentum_beta",
                                           "warmup_steps")] == [core.threshold, core.s_s, core.s_m, core.beta_m,
                                                                core.warmup_steps]
    adaptive = pack.NODE_CLASS_MAPPINGS["NegGuideAdaptiveGuider"].INPUT_TYPES()["required"]
    start, window = AdaptiveStart(), StepWindow.adaptive_default()
    assert adaptive["signal"][0] == list(ADAPTIVE_SIGNALS) and adaptive["signal"][1]["default"] == start.signal
    assert adaptive["threshold"][1]["default"] == start.threshold
    assert (adaptive["window_start"][1]["default"], adaptive["window_end"][1]["default"]) == (window.start, window.end)
    assert adaptive["window_unit"][1]["default"] == "fraction" == window.unit
    constant = pack.NODE_CLASS_MAPPINGS["NegGuideConstantNegativePatch"].INPUT_TYPES()["required"]
    assert constant["negative_scale"][1]["default"] == GuidanceSpec().negative_scale


def test_the_repository_root_loads_as_a_comfyui_custom_node():
    """ComfyUI's nodes.load_custom_node imports <dir>/__init__.py under a name made of its path."""
    name = str(ROOT).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.NODE_CLASS_MAPPINGS is pack.NODE_CLASS_MAPPINGS
    assert module.NODE_DISPLAY_NAME_MAPPINGS is pack.NODE_DISPLAY_NAME_MAPPINGS


def test_both_dns_nodes_state_both_scale_conventions():
    for name in ("NegGuideDNSGuider", "NegGuideDNSPatch"):
        text = pack.NODE_CLASS_MAPPINGS[name].DESCRIPTION
        assert "s + 1" in text and ("s = w - 1" in text or "dns_scale is s itself" in text), name
