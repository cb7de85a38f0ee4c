"""`python -m train t2i-study`: the three papers' text-to-image claims measured on the shipped testbed.

Sections (docs/t2i/study.md explains them; the report, docs/t2i/study/summary.md, has the results):
  a. critical step and delayed effect (Ban et al. Sec. 4): r_t per step for noun and adjective negatives; the
     step at which the target object becomes detectable in the x0 estimate without a negative, against the step
     at which the negative prompt's effect on it starts;
  b. object removal with preservation (Ban et al. Sec. 6): every method on the same noise; removal, preservation,
     SSIM to the image without the negative, detector-feature FID to renders of what should remain; the window
     start sweep (Fig. 9's U-curve: window steps needed to remove, against the start step);
  c. DNS and DNP (Desai & Vasconcelos): CFG alone, CFG + the DNS image's caption as negative, CFG + a fixed
     generic negative, on prompt adherence;
  d. DNG on prompts (Koulischer et al.): the forbidden "red shape" kept out of prompts that do not name it and
     prompts that do, NP vs SLD vs DNG at matched removal rate: preservation and colour/shape diversity.
Everything is resumable (finished cells are reused) and every rate has a prompt-clustered 95% interval.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from train.t2i.study.cases import adherence_cases, attribute_cases, concept_cases, image_seed, object_cases
from train.t2i.study.cells import Method, run_cell
from train.t2i.study.concept import concept_cells, concept_table
from train.t2i.study.sizes import STUDY_SIZES, StudySize

REMOVAL_METHODS = (
    Method("none", {"mode": "off"}, negative=False),
    Method("np", {"mode": "off"}),
    Method("windowed", {"mode": "windowed"}),
    Method("dng", {"mode": "dng"}),
    Method("sld", {"mode": "sld"}),
    Method("perp_neg", {"mode": "perp_neg"}),
)  # and the adaptive window with the signal and threshold the study calibrates (section a)
GENERIC_NEGATIVE = "a dotted shape on a cloudy background"  # fixed, prompt-independent (section c)


class Study:
    """The shared state of one study run: pipeline, detector, sizes, the cells folder, progress."""

    def __init__(self, pipe, detector, size: StudySize, cfg: float, out: Path, model_id: str, batch_size: int = 64):
        self.pipe, self.detector, self.size, self.cfg = pipe, detector, size, cfg
        self.steps, self.out, self.cells = size.steps, out, out / "cells"
        self.model_id, self.batch_size = model_id, batch_size
        self.started, self.images_made, self.images_reused = time.perf_counter(), 0, 0
        self.planned = planned_images(size)

    def progress(self, images: int, reused: bool = False) -> None:
        """One line per batch made (or cell reused): images so far of the plan, the rate, the time left."""
        if reused:
            self.images_reused += images
        else:
            self.images_made += images
        done = self.images_made + self.images_reused
        rate = self.images_made / max(time.perf_counter() - self.started, 1e-9)
        left = "" if not self.images_made else f", about {(self.planned - done) / rate / 60:.0f} min left"
        print(f"[t2i-study] {done}/{self.planned} images ({self.images_reused} reused; {rate:.2f} img/s{left})",
              file=sys.stderr, flush=True)

    def cell(self, name, method, cases, seeds=None, traces=(), image_seeds=None):
        return run_cell(self, name, method, cases, seeds or self.size.seeds, traces, image_seeds)


def grid_windows(size: StudySize) -> list[tuple[int, int]]:
    """The window-start sweep's (start, length) pairs, 1-based steps, each window cut at the last step."""
    out = []
    for start in (s for s in size.grid_starts if s <= size.steps):
        for length in size.grid_lengths:
            key = (start, min(size.steps, start + length - 1) - start + 1)
            if key not in out:
                out.append(key)
    return out


def window_cells(study: Study, cases) -> dict[tuple[int, int], object]:
    """NP inside steps [start, start + length) for the start/length grid."""
    return {(start, length): study.cell(f"grid-s{start}-l{length}", Method(
        f"window {start}-{start + length - 1}", {"mode": "windowed", "window": (start, start + length - 1)}), cases)
        for start, length in grid_windows(study.size)}


def planned_images(size: StudySize) -> int:
    """Every image the study makes at this size (the progress line's total)."""
    from train.t2i.study.analysis import NEVER_FIRES
    from train.t2i.study.concept import STRENGTHS

    traces = size.trace_cases * (2 * 2 + len(NEVER_FIRES) + 1)  # none and np per kind, the signal cells
    removal = (size.object_cases + size.attribute_cases) * (len(REMOVAL_METHODS) + 1)  # + the adaptive window
    grid = size.grid_cases * len(grid_windows(size))
    dnp = size.adherence_cases * 4  # CFG, DNS, DNP, the generic negative
    concept = size.concept_cases * (1 + sum(len(strengths) for _, strengths in STRENGTHS.values()))
    return size.seeds * (traces + removal + grid + dnp + concept)


def run_study(study: Study) -> dict:
    """Every cell of the study (reused where finished); returns them by section for the report."""
    size = study.size
    objects = object_cases(size.object_cases, size.seed)
    attributes = attribute_cases(size.attribute_cases, size.seed)
    cells = {"cases": {"object": objects, "attribute": attributes}}
    trace = {}
    for kind, cases in (("object", objects), ("attribute", attributes)):
        chosen = cases[: size.trace_cases]
        trace[kind] = {"none": study.cell(f"a-{kind}-none", REMOVAL_METHODS[0], chosen, traces=("x0",)),
                       "np": study.cell(f"a-{kind}-np", REMOVAL_METHODS[1], chosen, traces=("x0", "attention"))}
    cells["a"] = trace
    cells["a_signals"] = signal_cells(study, objects[: size.trace_cases])
    methods = REMOVAL_METHODS + (adaptive_method(study, trace["object"]["none"], cells["a_signals"]),)
    cells["b"] = {kind: {m.name: study.cell(f"b-{kind}-{m.name}", m, cases) for m in methods}
                  for kind, cases in (("object", objects), ("attribute", attributes))}
    cells["b_grid"] = window_cells(study, objects[: size.grid_cases])
    cells["c"] = dnp_cells(study, adherence_cases(size.adherence_cases, size.seed))
    concepts = concept_cases(size.concept_cases, size.seed)
    cells["d"] = concept_cells(study, concepts)
    cells["cases"]["concept"] = concepts
    return cells


def signal_cells(study: Study, cases) -> dict:
    """The adaptive window's two start signals recorded at every step, on section a's object cases, with
    thresholds that never fire (the images are CFG's, the records the signals' whole course), and DNG's tracked
    posterior from a DNG pass too weak to move the images."""
    from train.t2i.study.analysis import NEVER_FIRES, POSTERIOR_PROBE_LAMBDA0

    cells = {signal: study.cell(f"a-object-signal-{signal}", Method(f"{signal} signal", {
        "mode": "adaptive", "window": (1, study.steps), "adaptive": {"signal": signal, "threshold": threshold}}),
        cases, traces=("signal",)) for signal, threshold in NEVER_FIRES.items()}
    cells["posterior"] = study.cell("a-object-signal-posterior", Method("DNG posterior", {
        "mode": "dng", "dng": {"lambda0": POSTERIOR_PROBE_LAMBDA0}}), cases, traces=("signal",))
    return cells


def adaptive_method(study: Study, none_cell, signals: dict) -> Method:
    """Section b's adaptive window: the signal and threshold whose starts come closest to the critical step (the
    core's default where no image's target became detectable)."""
    from train.t2i.study.analysis import signal_calibration

    calibration = signal_calibration(study, none_cell, signals)
    chosen = calibration["chosen"]
    if chosen is None:
        return Method("adaptive", {"mode": "adaptive"})  # the core's default signal and threshold
    return Method("adaptive", {"mode": "adaptive", "adaptive": {
        "signal": chosen, "threshold": calibration["signals"][chosen]["threshold"]}})


def dnp_cells(study: Study, cases) -> dict:
    """CFG alone, the DNS images, their captions as negatives (DNP), and a fixed generic negative."""
    from dataclasses import replace

    from train.t2i.detector import image_captions
    from train.t2i.scenes import to_unit

    cfg_alone = study.cell("c-cfg", Method("cfg", {"mode": "off"}, negative=False), cases)
    dns = study.cell("c-dns", Method("dns", {"mode": "dns"}, negative=False), cases)
    captions = image_captions(study.detector, to_unit(dns.images))
    seeds = study.size.seeds
    per_image = [replace(cases[k // seeds], negative=captions[k]) for k in range(len(captions))]
    # DNP: each image's own DNS caption as its negative, from the same seed: one case per image
    dnp = study.cell("c-dnp", Method("dnp", {"mode": "off"}), per_image, seeds=1,
                     image_seeds=[image_seed(k // seeds, k % seeds) for k in range(len(per_image))])
    generic = [replace(c, negative=GENERIC_NEGATIVE) for c in cases]
    fixed = study.cell("c-generic", Method("generic negative", {"mode": "off"}), generic)
    return {"cases": cases, "cfg": cfg_alone, "dns": dns, "dnp": dnp, "generic": fixed, "captions": captions}


def load_study(model: Path, detector_dir: Path | None, size: StudySize, out: Path, cfg: float | None, device: str):
    from negguide.generate import NegGuidePipeline
    from train.model_dir import verify_hashes
    from train.t2i.detector import load_detector

    verify_hashes(model)
    pipe = NegGuidePipeline.from_pretrained(model, scheduler="ddim").to(device)
    pipe.set_progress_bar_config(disable=True)
    detector = load_detector(detector_dir or model / "detector", device)
    digest = json.loads((model / "sha256.json").read_text()).get("unet/diffusion_pytorch_model.safetensors", "")
    cfg = cfg if cfg is not None else pipe.defaults.get("guidance_scale", 4.0)
    return Study(pipe, detector, size, cfg, out, digest[:16])


__all__ = ["STUDY_SIZES", "Study", "load_study", "run_study"]


def report_study(study: Study, cells: dict, report: Path) -> dict:
    """Every number of the study (results.json), summary.md and the figures, into ``report``."""
    from train.t2i.study import analysis as A
    from train.t2i.study import report as R

    report.mkdir(parents=True, exist_ok=True)
    size = study.size
    results = {"size": size.__dict__, "cfg": study.cfg, "steps": study.steps, "model": study.model_id}
    results["a"] = {kind: A.critical_steps(study, c["none"], c["np"], kind) for kind, c in cells["a"].items()}
    results["a_signals"] = A.signal_calibration(study, cells["a"]["object"]["none"], cells["a_signals"])
    R.critical_figure(results["a"], report / "critical_step.png", study.steps)
    results["b"] = {kind: A.removal_table(study, cells["cases"][kind], section)
                    for kind, section in cells["b"].items()}
    for kind, section in cells["b"].items():
        R.grid_figure(section, cells["cases"][kind], size.seeds, report / f"removal_{kind}.png")
    results["b_sweep"] = A.window_sweep(study, cells["cases"]["object"][: size.grid_cases], cells["b_grid"])
    R.sweep_figure(results["b_sweep"], report / "window_start.png")
    results["c"] = A.dnp_table(study, cells["c"])
    results["c"]["captions"] = cells["c"]["captions"][:16]
    results["d"] = concept_table(study, cells["cases"]["concept"], cells["d"])
    R.concept_figure(results["d"], report / "concept.png")
    R.write_json(report / "results.json", results)
    lines = [f"# Negative prompts on the shapes testbed: the papers' claims, measured ({size.name} size)", "",
             f"Model {study.model_id}, DDIM {study.steps} steps, CFG {study.cfg:g}; {size.seeds} seeds per prompt; "
             "95% intervals by bootstrap over prompts.", "", "## a. Critical step and delayed effect", ""]
    for kind, res in results["a"].items():
        lines += R.critical_markdown(kind, res)
    lines += R.signal_markdown(results["a_signals"])
    lines += ["", "![critical step](critical_step.png)", "", "## b. Removal with preservation", ""]
    for kind in ("object", "attribute"):
        lines += R.removal_markdown(f"{kind} negatives", results["b"][kind])
        lines += [f"![{kind} removal samples](removal_{kind}.png)", ""]
    lines += ["![window start](window_start.png)", "", "## c. DNS and DNP", "", "| method | exact match | object "
              "adherence | detector FID to renders |", "|---|---|---|---|"]
    for name in ("cfg", "dnp", "generic", "dns"):
        row = results["c"][name]
        lines.append(f"| {R.METHOD_LABELS[name]} | {R.pct(row['exact_match'])} | {R.pct(row['object_adherence'])} | "
                     f"{row['fid_to_prompt_renders']:.2f} |")
    lines += ["", f"DNP - CFG exact match (paired): {R.num(results['c']['dnp_minus_cfg_exact'])}; generic - CFG: "
                  f"{R.num(results['c']['generic_minus_cfg_exact'])}.", "",
              "## d. DNG on prompts: keeping red out", ""]
    for kind, res in results["d"].items():
        lines += R.concept_markdown(kind, res)
    lines += ["![red share against preservation](concept.png)", ""]
    (report / "summary.md").write_text("\n".join(lines) + "\n")
    return results
