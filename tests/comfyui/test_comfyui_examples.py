"""examples/comfyui: the workflows ComfyUI's frontend exported (``frontend.py --workflows``) are whole graphs, one
per graph of ``example_workflows.py``, and every negguide node in them carries settings the core accepts."""

import json
from pathlib import Path

import pytest
from example_workflows import EXAMPLES

import negguide_comfyui as pack
from negguide.frames import Frame

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "comfyui"
FLOW_EXAMPLES = {"sd3_windowed"}


def widget_names(node_class) -> list[str]:
    inputs = node_class.INPUT_TYPES()
    specs = {**inputs["required"], **inputs.get("optional", {})}
    return [name for name, spec in specs.items() if spec[0] in ("FLOAT", "INT") or isinstance(spec[0], list)]


def test_there_is_a_workflow_file_per_example():
    assert {p.stem for p in EXAMPLES_DIR.glob("*.json")} == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_is_a_whole_graph_with_valid_negguide_settings(name):
    workflow = json.loads((EXAMPLES_DIR / f"{name}.json").read_text())
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for link_id, origin, _, target, _, _ in workflow["links"]:
        assert origin in nodes and target in nodes, f"link {link_id} points nowhere"
    api = EXAMPLES[name]().nodes
    assert sorted(n["type"] for n in nodes.values()) == sorted(n["class_type"] for n in api.values())
    frame = Frame("x0", "flow_t", "vp") if name in FLOW_EXAMPLES else Frame.k_diffusion()
    ours = [n for n in nodes.values() if n["type"] in pack.NODE_CLASS_MAPPINGS and n["type"] != "NegGuidePlot"]
    assert ours
    for node in ours:
        node_class = pack.NODE_CLASS_MAPPINGS[node["type"]]
        values = dict(zip(widget_names(node_class), node["widgets_values"], strict=True))
        mode = node_class.MODE
        scale_name, _, to_cfg = mode.guider_scale
        cfg = to_cfg(values.pop(scale_name)) if scale_name in values else 7.0
        mode.spec(values, cfg, frame)  # raises the core's SettingsError on a bad value
