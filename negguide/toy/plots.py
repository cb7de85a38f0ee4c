"""PNG figures of the toy study (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import torch

from .tables import PROBE_ROWS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def histograms(arrays: dict, path: Path) -> None:
    plt = _plt()
    mix, removal = arrays["mix1"], arrays["removal"]
    keep = mix.remembered()
    grid = torch.linspace(-4.5, 5.0, 600, dtype=torch.float64)
    target = keep.log_density(grid[:, None], 0.0).exp()
    full = mix.log_density(grid[:, None], 0.0).exp()
    names = [("unguided", "unguided (full model)"), ("cfg", "CFG toward kept modes"), ("np", "negative prompting"),
             ("sld", "safe latent diffusion"), ("dng_exact", "DNG, exact posterior"),
             ("dng_tracked", "DNG, tracked posterior")]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), sharex=True, sharey=True)
    for ax, (key, title) in zip(axes.flat, names, strict=False):
        m = removal["methods"][key]
        ax.hist(removal["samples"][key].reshape(-1).numpy(), bins=160, range=(-4.5, 5.0), density=True,
                color="#4c72b0", alpha=0.75)
        ax.plot(grid, target, color="k", lw=1.2, label="target: kept modes")
        ax.plot(grid, full, color="#c44e52", lw=0.8, ls="--", label="full model")
        scale = f", scale {m['scale']:g}" if key in ("np", "sld", "dng_tracked") else ""
        ax.set_title(f"{title}{scale}\nforbidden {100 * m['forbidden_mass']:.2f}%  W1 {m['w1_to_target']:.3f}",
                     fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Removing the right-hand mode of a 1-D Gaussian mixture (DDPM sampler)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def posterior_tracking(arrays: dict, path: Path) -> None:
    plt = _plt()
    panels = [("ddpm", "1000", "transition-beta"), ("ddpm", "20", "transition-beta"),
              ("ddim", "20", "transition-beta_tilde"), ("ddim", "20", "flow-hutchinson-1"),
              ("dpmpp_2m", "20", "flow-hutchinson-1"), ("euler_a", "20", "transition-sampler")]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5), sharey=True)
    for ax, (sampler, steps, spec) in zip(axes.flat, panels, strict=False):
        r = arrays["tracking"][sampler][steps]["by_tracker"][spec]
        c = r["curves"]
        x = range(len(c["exact_forbidden"]))
        ax.plot(x, c["exact_forbidden"], "r-", lw=1.5, label="exact, ends forbidden")
        ax.plot(x, c["tracked_forbidden"], "r--", lw=1.5, label="tracked, ends forbidden")
        ax.plot(x, c["exact_allowed"], "b-", lw=1.5, label="exact, ends allowed")
        ax.plot(x, c["tracked_allowed"], "b--", lw=1.5, label="tracked, ends allowed")
        ax.set_title(f"{sampler} {steps} steps, {spec}\nMAE end {r['mean_abs_error_final']:.3f}, "
                     f"over time {r['mean_abs_error_time']:.3f}", fontsize=9)
        ax.set_xlabel("step")
    axes[0, 0].set_ylabel("mean p(forbidden | x)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Tracked vs exact posterior along unguided trajectories (1-D three-mode mixture)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def lambda_curve(arrays: dict, path: Path) -> None:
    plt = _plt()
    lam = arrays["removal"]["lambda_curve"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(len(lam)), lam)
    ax.set_yscale("log")
    ax.set_xlabel("step (noise decreases to the right)")
    ax.set_ylabel("mean lambda(x, t)")
    ax.set_title("DNG dynamic scale, tracked posterior (1-D, DDPM)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _tracker_point(rows: list[dict]) -> tuple[float, float, float, float]:
    """One tracker in one panel: (x, mean, lowest, highest end error); x is the mean of the rows'
    ``average_probe_rows``, the same number the summary's per-tracker table averages."""
    x = sum(r["average_probe_rows"] for r in rows) / len(rows)
    errors = [r["mean_abs_error_final"] for r in rows]
    return x, sum(errors) / len(errors), min(errors), max(errors)


def _tracking_panel(ax, rows: list[dict], trackers: list[str]) -> None:
    for i, spec in enumerate(trackers):
        mine = [r for r in rows if r["tracker"] == spec]
        if not mine:
            continue
        x, mean, lowest, highest = _tracker_point(mine)
        ax.errorbar([x], [mean], yerr=[[mean - lowest], [highest - mean]], fmt="os^vDPX"[i % 7], capsize=3,
                    label=spec)
    ax.axhline(0.03, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(PROBE_ROWS)
    ax.set_ylim(0, None)  # linear: the exact tracker's ~1e-6 is "zero" here, and 0.03 stays readable


def high_dimensional_figure(rows: list[dict]):
    """End tracking error against the probe rows each tracker spends (the summary's ``average_probe_rows``),
    one panel per mixture: each tracker's mean over samplers, step counts and seeds, bars from best to worst.
    ``rows``: the summary's ``high_dimensional_tracking``."""
    plt = _plt()
    panels = sorted({(r["mixture"], r["dim"]) for r in rows})
    trackers = list(dict.fromkeys(r["tracker"] for r in rows))
    # constrained layout spaces the panels by their labels and keeps the legend below them
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 4.2), sharey=True, squeeze=False,
                             layout="constrained")
    fig.get_layout_engine().set(wspace=0.04)
    for ax, (mixture, dim) in zip(axes[0], panels, strict=True):
        _tracking_panel(ax, [r for r in rows if (r["mixture"], r["dim"]) == (mixture, dim)], trackers)
        ax.set_title(f"{mixture}, {dim}-D, 10 classes", fontsize=9)
    axes[0][0].set_ylabel("mean |p_tracked - p_exact| at the end")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, 2 * len(panels)), fontsize=7,
               frameon=False)
    return fig


def high_dimensional(arrays: dict, path: Path) -> None:
    fig = high_dimensional_figure(arrays["high_d"])
    fig.savefig(path, dpi=90)
    _plt().close(fig)


def write_all(arrays: dict, out: Path) -> list[Path]:
    paths = {"histograms.png": histograms, "posterior_tracking.png": posterior_tracking,
             "lambda.png": lambda_curve, "high_dimensional_tracking.png": high_dimensional}
    written = []
    for name, fn in paths.items():
        fn(arrays, out / name)
        written.append(out / name)
    return written
