"""DNG's posterior p(t) and guidance scale lambda(t) per image, as a matplotlib figure.

matplotlib is optional (``pip install negguide[toy]``); it is imported only when a plot is drawn.
"""

from __future__ import annotations


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_guidance(records: list[dict], title: str | None = None, labels: list[str] | None = None,
                  x_axis: str = "step"):
    """A figure with two panels, p(t) and lambda(t), one line per image, from a run's ``records`` (DNG only).

    ``x_axis``: ``"step"`` (1-based sampler step) or ``"sigma"`` (the k-diffusion noise level, log scale,
    decreasing to the right). Raises ValueError when the records hold no DNG posterior."""
    if x_axis not in ("step", "sigma"):
        raise ValueError(f"x_axis must be 'step' or 'sigma', got {x_axis!r}")
    rows = [r for r in records if "p" in r]
    if not rows:
        raise ValueError("these records hold no DNG posterior (p and lambda exist for mode 'dng' with lambda0 > 0)")
    try:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state
    except ImportError as err:
        raise ImportError("the p(t)/lambda(t) plot needs matplotlib: pip install 'negguide[toy]'") from err

    if not isinstance(rows[0]["p"], list):  # record="mean": one value per step
        rows = [{**r, "p": [r["p"]], "lambda": [r["lambda"]]} for r in rows]
        labels = labels or ["batch mean"]
    images = len(rows[0]["p"])
    labels = labels or [f"image {i}" for i in range(images)]
    xs = [r["step"] + 1 for r in rows] if x_axis == "step" else [r["sigma"] for r in rows]
    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax_p, ax_l = fig.subplots(1, 2)
    for i in range(images):
        ax_p.plot(xs, [r["p"][i] for r in rows], marker=".", label=labels[i])
        ax_l.plot(xs, [r["lambda"][i] for r in rows], marker=".", label=labels[i])
    for ax, name in ((ax_p, "posterior p(t) of the negative concept"), (ax_l, "guidance scale lambda(t)")):
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        if x_axis == "sigma":
            ax.set_xscale("log")
            ax.invert_xaxis()
            ax.set_xlabel("sigma (k-diffusion noise level)")
        else:
            ax.set_xlabel("sampler step")
    lowest = min(min(r["p"]) for r in rows)
    ax_p.set_yscale("log")  # p runs from the prior (0.01) up to p_max, or down by orders of magnitude
    ax_p.set_ylim(max(lowest, 1e-12) / 2, 1.0)
    ax_l.set_ylim(bottom=0)
    if images <= 8:
        ax_l.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def figure_to_image(fig, dpi: int = 100):
    """A matplotlib figure as a PIL image."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    buf.seek(0)
    return Image.open(buf).convert("RGB")
