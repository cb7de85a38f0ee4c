"""The lambda(t) / p(t) picture appended to the outputs: the core's :func:`negguide.draw_passes` (PIL, which every
WebUI ships), one block per DNG pass (batch iteration, hires pass)."""

from __future__ import annotations

from negguide import PlottedPass, draw_passes


def plot_passes(passes, width: int = 640):
    """The DNG passes of a job, or None when no pass tracked a posterior."""
    shown = [PlottedPass(f"{'hires' if sp.is_hr else 'first pass'}, batch {sp.batch_number + 1}, "
                         f"{sp.run.tracker_name()}, {sp.run.average_extra_rows():.2f} UNet rows per image and step "
                         "beyond CFG's 2", sp.run.records, sp.run.batch_size, True)
             for sp in passes if any("p" in r for r in sp.run.records)]
    if not shown:
        return None
    return draw_passes(shown, width, title="negguide DNG: posterior p(t) and guidance scale lambda(t) per step")
