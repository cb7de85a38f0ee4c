"""The node definitions ComfyUI reads (inputs, outputs, names), and the repository root as a custom node."""

import importlib.util
from pathlib import Path

import pytest

import negguide_comfyui as pack
from negguide.configs import TRACKERS, VARIANCES, DNGConfig, SLDConfig
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
        if kind in ("FLOAT", "INT") or isinstance(kind, list):  # widgets explain themselves
            assert spec[1]["tooltip"], spec
        if kind in ("FLOAT", "INT"):
            assert spec[1]["min"] <= spec[1]["default"] <= spec[1]["max"]


def test_guider_and_patch_inputs():
    windowed = pack.NODE_CLASS_MAPPINGS["NegGuideWindowedGuider"].INPUT_TYPES()["required"]
    assert list(windowed)[:5] == ["model", "positive", "negative", "empty_conditioning", "cfg"]
    dns = pack.NODE_CLASS_MAPPINGS["NegGuideDNSGuider"].INPUT_TYPES()["required"]
    assert list(dns) == ["model", "positive", "empty_conditioning", "dns_scale"]
    patch = pack.NODE_CLASS_MAPPINGS["NegGuideDNGPatch"].INPUT_TYPES()
    assert list(patch["required"])[:2] == ["model", "empty_conditioning"] and "cfg" not in patch["required"]
    assert set(patch["optional"]) == {"probe_pairs", "probe_directions", "variance"}
    assert pack.NODE_CLASS_MAPPINGS["NegGuideDNGGuider"].RETURN_TYPES == ("GUIDER", "NEGGUIDE_TRACE")
    assert pack.NODE_CLASS_MAPPINGS["NegGuideDNGPatch"].RETURN_TYPES == ("MODEL", "NEGGUIDE_TRACE")


def test_widget_defaults_and_choices_are_the_cores():
    dng = pack.NODE_CLASS_MAPPINGS["NegGuideDNGPatch"].INPUT_TYPES()
    defaults, core = {k: v[1]["default"] for k, v in {**dng["required"], **dng["optional"]}.items()
                      if k not in ("model", "empty_conditioning")}, DNGConfig()
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


def test_the_repository_root_loads_as_a_comfyui_custom_node():
    """ComfyUI's nodes.load_custom_node imports <dir>/__init__.py under a name made of its path."""
    name = str(ROOT).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.NODE_CLASS_MAPPINGS is pack.NODE_CLASS_MAPPINGS
    assert module.NODE_DISPLAY_NAME_MAPPINGS is pack.NODE_DISPLAY_NAME_MAPPINGS
