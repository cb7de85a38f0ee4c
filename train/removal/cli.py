"""`python -m train removal` and `python -m train reproduce-removal`: the arguments and their dispatch."""

from __future__ import annotations

import argparse
import sys

from train.removal.presets import (
    FID_NETWORKS,
    METHODS,
    PRESET_ALIASES,
    REMOVAL_PRESETS,
    SAMPLER_VARIANCES,
    SAMPLERS,
    TRANSITION_VARIANCES,
)

REMOVAL_EPILOG = """methods:
  np    negative prompting, eps_u - lambda (eps_f - eps_u) with a constant lambda (--np-scales)
  sld   Safe Latent Diffusion (Schramowski et al. 2023), guidance scale --sld-scales
  dng   Dynamic Negative Guidance (Koulischer et al. 2025), lambda0 --dng-lambda0, for each --dng-p-max
  np-schedule  the ablation: NP with lambda(k) = the mean over samples of DNG's lambda at step k, taken from the
        finished DNG point with lambda0 in --schedule-lambda0 and p_max --schedule-p-max (same sampler)
  plus two baselines on every sampler: the unconditional model alone, and with --oracle the model retrained
  without the class (what removal should reach).

example (models trained with `python -m train ddpm` / `classifier`):
  python -m train removal --dataset mnist --remove 0 --uncond runs/ddpm-mnist/model \\
      --forget runs/ddpm-mnist-only0/model --oracle runs/ddpm-mnist-drop0/model \\
      --classifier runs/classifier-mnist --out runs/removal-mnist-0
An interrupted sweep resumes from the points already in --out; `accelerate launch -m train removal ...` spreads
the points over processes. See docs/removal.md."""


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def _names(choices):
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(v.strip() for v in text.split(",") if v.strip())
        wrong = [n for n in names if n not in choices]
        if wrong:
            raise argparse.ArgumentTypeError(f"{', '.join(wrong)} not among {', '.join(choices)}")
        if not names:
            raise argparse.ArgumentTypeError(f"name at least one of {', '.join(choices)}")
        return names

    return parse


def _study_args(p: argparse.ArgumentParser) -> None:
    """The sweep's settings (defaults: the preset's, shown by --help of the preset table in docs/removal.md)."""
    g = p.add_argument_group("sweep (default: the preset's value)")
    g.add_argument("--preset", choices=sorted(REMOVAL_PRESETS) + sorted(PRESET_ALIASES),
                   help="default: <dataset>-paper on a GPU, <dataset>-cpu on a CPU")
    g.add_argument("--methods", type=_names(METHODS), help=f"comma-separated, among {','.join(METHODS)}")
    g.add_argument("--samples", type=int, help="samples per point (paper: 10240)")
    g.add_argument("--batch-size", type=int, help="samples per batched sampler pass")
    g.add_argument("--seed", type=int, help="seed of the common random numbers (the same for every point)")
    g.add_argument("--samplers", type=_names(SAMPLERS), help="ddpm (ancestral) and/or ddim (deterministic)")
    g.add_argument("--ddim-methods", type=_names(METHODS), help="methods also run on DDIM (default: all)")
    g.add_argument("--schedule-lambda0", type=_floats,
                   help="the DNG lambda0 values np-schedule follows (default: the preset's; empty: every one)")
    g.add_argument("--schedule-p-max", type=float, help="the DNG p_max np-schedule follows (default: the smallest)")
    g.add_argument("--decisive-samples", type=int,
                   help="samples of the decisive points (the baselines and the --decisive-* scales): the matched-"
                        "share comparison uses the points with a sampler's largest sample count")
    g.add_argument("--decisive-np-scales", type=_floats, help="NP lambda values that are decisive points")
    g.add_argument("--decisive-sld-scales", type=_floats, help="SLD scales that are decisive points")
    g.add_argument("--decisive-dng-lambda0", type=_floats,
                   help="DNG lambda0 values that are decisive (at --decisive-dng-p-max; np-schedule follows them)")
    g.add_argument("--decisive-dng-p-max", type=_floats, help="the DNG p_max values whose points can be decisive")
    g.add_argument("--ddpm-steps", type=int, help="ancestral steps; below the training T the schedule is respaced")
    g.add_argument("--ddim-steps", type=int, help="DDIM steps")
    g.add_argument("--sampler-variance", choices=SAMPLER_VARIANCES,
                   help="what the ancestral sampler injects: beta (the paper, right at T = 1000) or beta_tilde "
                        "(the CPU presets: right for respaced chains)")
    g.add_argument("--transition-variance", choices=TRANSITION_VARIANCES,
                   help="DNG's transition likelihood: matched = the sampler's variance; beta_tilde is the authors' "
                        "code")
    g.add_argument("--np-scales", type=_floats, help="NP's constant lambda values, e.g. 0.25,0.5,1")
    g.add_argument("--sld-scales", type=_floats, help="SLD guidance scales")
    g.add_argument("--dng-lambda0", type=_floats, help="DNG lambda0 values")
    g.add_argument("--dng-p-max", type=_floats, help="DNG posterior caps, each a sweep of its own")
    g.add_argument("--dng-prior", type=float, help="DNG prior p(c-) (paper: MNIST 0.25, CIFAR-10 0.01)")
    g.add_argument("--dng-temperature", type=float, help="DNG temperature tau (paper: 0.25 / 0.2)")
    g.add_argument("--dng-offset", type=float, help="DNG offset delta (paper: 0 / 0.0002)")
    g.add_argument("--dng-min-step-ratio", type=float,
                   help="DDIM's flow tracker: a step to sigma_next < ratio * sigma takes the left-point rule (0: the "
                        "trapezoid everywhere; docs/dng-tracking.md)")
    g.add_argument("--sld-threshold", type=float, help="SLD threshold lambda_thresh (paper: 0.04)")
    g.add_argument("--sld-s-s", type=float, help="SLD safety scale s_s (paper: 100)")
    g.add_argument("--sld-beta-m", type=float, help="SLD momentum decay beta_m (paper: 0.2)")
    g.add_argument("--sld-s-m", type=float, help="SLD momentum scale s_m (paper: 0.1)")
    g.add_argument("--fid", type=_names(FID_NETWORKS + ("none",)),
                   help="FID networks: inception (TF-Inception), classifier (its penultimate layer), or none")
    g.add_argument("--fid-reference-count", type=int,
                   help="training images (without the class) behind the FID reference statistics (default: all)")
    g.add_argument("--fid-resamples", type=int,
                   help="paired bootstrap resamples of the kept / balanced FIDs (an eigen-decomposition each; 0: "
                        "point estimates only)")
    g.add_argument("--data-dir", help="dataset folder for the FID reference (default: ../shared/datasets/<dataset>)")
    g.add_argument("--download", action="store_true",
                   help="fetch the dataset with torchvision into --data-dir (default ./data) first")
    g.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is present")
    g.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")


def add_removal_commands(sub) -> None:
    r = sub.add_parser("removal", help="NP vs SLD vs DNG class removal on your trained models (the DNG paper's "
                                       "Sec. 4.1): points.csv, plots, grids",
                       epilog=REMOVAL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--dataset", required=True, help="mnist or cifar10 (the classifier's and the FID's data)")
    r.add_argument("--remove", type=int, required=True, help="the class K to remove")
    r.add_argument("--uncond", required=True, help="model/ folder of the unconditional DDPM")
    r.add_argument("--forget", required=True, help="model/ folder of the DDPM trained on class K only")
    r.add_argument("--classifier", required=True, help="folder of the classifier (python -m train classifier)")
    r.add_argument("--oracle", help="model/ folder of the DDPM trained without class K (the retrained oracle)")
    r.add_argument("--out", required=True, help="the sweep's folder: points/ (samples and metrics per point, what a "
                                                "resume reads) and the FID reference cache")
    r.add_argument("--report", help="folder for points.csv, points.json, the plots and summary.md (default: --out)")
    _study_args(r)

    a = sub.add_parser("reproduce-removal", help="train (or reuse) every model of the study, run the sweep and "
                                                 "write the report: one command",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  python -m train reproduce-removal --dataset mnist --remove 0 --preset tiny "
                              "--download   # minutes: the whole study at toy sizes\n"
                              "  python -m train reproduce-removal --dataset mnist --remove 0\n"
                              "Trained models are reused; unfinished ones resume exactly. See docs/removal.md.")
    a.add_argument("--dataset", required=True, help="mnist (cifar10: its DDPMs need a GPU)")
    a.add_argument("--remove", type=int, required=True, help="the class K to remove")
    a.add_argument("--runs", help="folder of the study's models and sweep (default runs/removal-<dataset>-<K>, "
                                  "with -tiny appended for tiny training)")
    a.add_argument("--report", help="folder for points.csv/json, the plots and summary.md (default: <runs>/report)")
    a.add_argument("--training", choices=("tiny", "cpu", "gpu"),
                   help="training sizes (default: tiny with --preset tiny, else gpu when one is present, else cpu); "
                        "see docs/removal.md")
    _study_args(a)


def dispatch(args) -> int:
    """Run the command; Ctrl-C ends it with a line on how to continue (finished points and checkpoints stay)."""
    try:
        if args.command == "removal":
            from train.removal.study import run_removal

            run_removal(args)
        else:
            from train.removal.reproduce import reproduce_removal

            reproduce_removal(args)
    except KeyboardInterrupt:
        print(f"interrupted: what was finished is kept; run the same `python -m train {args.command}` command again "
              "to continue (finished models and points are reused, an unfinished point goes on from its last saved "
              "batch)", file=sys.stderr)
        return 130
    return 0
