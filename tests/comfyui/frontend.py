"""ComfyUI's real frontend (the ``comfyui-frontend-package`` a server serves), driven in headless Chromium.

    $PLAYWRIGHT_PYTHON tests/comfyui/frontend.py URL [--shots DIR] [--workflows DIR] [--report FILE]

``--shots``: every negguide node alone on a fresh graph at its default widgets, screenshot cropped to the node
(``DIR/comfyui-<node>.png``). ``--workflows``: every graph of ``example_workflows.py`` loaded the way the
frontend loads an API-format file, laid out, and saved as the frontend's own workflow export
(``DIR/<name>.json``; with ``--shots`` also a screenshot of two of them). ``--report``: what the frontend built
for each node (title, widgets and their values, inputs, outputs) as JSON, for ``test_comfyui_frontend.py``.
Needs ``playwright`` (PyPI) and Debian's ``chromium``; Playwright downloads no browser here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

NODE_X, NODE_Y, MARGIN, BADGE = 60, 140, 12, 30  # graph units; BADGE: the node-source badge above the title
NODE_JS = """(type) => {
  const graph = window.app.graph;
  graph.clear();
  const node = window.LiteGraph.createNode(type);
  node.pos = [NODE_X, NODE_Y];
  graph.add(node);
  const ds = window.app.canvas.ds;
  ds.scale = 1.25; ds.offset = [0, 0];
  window.app.canvas.setDirty(true, true);
  window.app.canvas.draw(true, true);
  const box = window.app.canvas.canvas.getBoundingClientRect();
  return {
    title: node.title, size: [node.size[0], node.size[1]], scale: ds.scale,
    canvas: [box.left, box.top],
    titleHeight: window.LiteGraph.NODE_TITLE_HEIGHT,
    widgets: (node.widgets || []).map(w => [w.name, w.value]),
    inputs: (node.inputs || []).map(i => [i.name, i.type]),
    outputs: (node.outputs || []).map(o => [o.name, o.type]),
  };
}""".replace("NODE_X", str(NODE_X)).replace("NODE_Y", str(NODE_Y))

SETTINGS_JS = """async () => {  // a clean canvas: no minimap, no render statistics
  for (const [id, value] of [["Comfy.Minimap.Visible", false], ["Comfy.Graph.CanvasInfo", false]]) {
    await window.app.ui.settings.setSettingValueAsync(id, value);
  }
}"""

LOAD_JS = """async ([api, name]) => {
  await window.app.loadApiJson(api, name);
  for (const node of window.app.graph._nodes) {  // an example keeps its seed: ComfyUI's default is 'randomize'
    for (const w of node.widgets || []) if (w.name === "control_after_generate") w.value = "fixed";
  }
  window.app.graph.arrange(60);
  const nodes = window.app.graph._nodes, title = window.LiteGraph.NODE_TITLE_HEIGHT;
  return {
    workflow: JSON.stringify(window.app.graph.serialize(), null, 2),
    bounds: [Math.min(...nodes.map(n => n.pos[0])), Math.min(...nodes.map(n => n.pos[1] - title)),
             Math.max(...nodes.map(n => n.pos[0] + n.size[0])), Math.max(...nodes.map(n => n.pos[1] + n.size[1]))],
  };
}"""

SHOW_JS = """([left, top, scale]) => {  // the canvas's top 40 px are under the workflow tabs
  const ds = window.app.canvas.ds;
  ds.scale = scale; ds.offset = [20 / scale - left, 60 / scale - top];
  window.app.canvas.setDirty(true, true);
  window.app.canvas.draw(true, true);
  const box = window.app.canvas.canvas.getBoundingClientRect();
  return [box.left, box.top];
}"""
WORKFLOW_SCALE = 0.72  # below ~0.6 the frontend draws nodes without their text


def open_frontend(playwright, url: str):
    browser = playwright.chromium.launch(
        executable_path=shutil.which("chromium") or "/usr/bin/chromium", headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run"])
    page = browser.new_page(viewport={"width": 1500, "height": 1000}, device_scale_factor=1)
    page.goto(url)
    page.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=120_000)
    page.wait_for_timeout(1500)
    page.keyboard.press("Escape")  # a first-run dialog, if any
    page.evaluate(SETTINGS_JS)
    return browser, page


def node_types(url: str) -> list[str]:
    import urllib.request

    with urllib.request.urlopen(url + "/object_info", timeout=60) as r:
        return sorted(k for k in json.loads(r.read()) if k.startswith("NegGuide"))


def shoot_nodes(page, url: str, shots: Path | None) -> dict:
    report = {}
    for node in node_types(url):
        info = page.evaluate(NODE_JS, node)
        report[node] = info
        if shots is not None:
            scale, (left, top) = info["scale"], info["canvas"]
            above = info["titleHeight"] + BADGE + MARGIN
            x, y = left + (NODE_X - MARGIN) * scale, top + (NODE_Y - above) * scale
            width, height = (info["size"][0] + 2 * MARGIN) * scale, (info["size"][1] + above + MARGIN) * scale
            page.screenshot(path=str(shots / f"comfyui-{node}.png"),
                            clip={"x": x, "y": y, "width": width, "height": height})
    return report


def save_workflows(page, out: Path, shots: Path | None) -> None:
    from example_workflows import EXAMPLES, SHOWN

    viewport = page.viewport_size
    for name, build in EXAMPLES.items():
        loaded = page.evaluate(LOAD_JS, [build().nodes, name])
        (out / f"{name}.json").write_text(loaded["workflow"] + "\n")
        if shots is not None and name in SHOWN:
            left, top, right, bottom = loaded["bounds"]
            width, height = (right - left) * WORKFLOW_SCALE + 40, (bottom - top) * WORKFLOW_SCALE + 80
            page.set_viewport_size({"width": int(width) + 120, "height": int(height) + 120})
            x, y = page.evaluate(SHOW_JS, [left, top, WORKFLOW_SCALE])
            page.wait_for_timeout(300)
            page.screenshot(path=str(shots / f"comfyui-workflow-{name.replace('_', '-')}.png"),
                            clip={"x": x, "y": y + 40, "width": width, "height": height - 40})
            page.set_viewport_size(viewport)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--shots", type=Path)
    parser.add_argument("--workflows", type=Path)
    parser.add_argument("--report", type=Path)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, page = open_frontend(playwright, args.url.rstrip("/"))
        try:
            report = shoot_nodes(page, args.url.rstrip("/"), args.shots)
            if args.workflows is not None:
                save_workflows(page, args.workflows, args.shots)
        finally:
            browser.close()
    if args.report is not None:
        args.report.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
