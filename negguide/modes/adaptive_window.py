"""``adaptive``: the negative prompt of a step window that starts, per image, when a signal measured online says the
critical step has come (Ban et al. 2024, Sec. 6: a negative applied before the object it names exists disturbs the
layout; applied after the critical step it removes the object and keeps the rest), and stops at the window's end.

Per image and step, inside ``window`` (its start: the earliest start; its end: where the negative stops):
* before the image has started, the negative branch is evaluated beside CFG's two to measure the signal
  (:class:`negguide.configs.AdaptiveStart`); the image gets CFG ``E + w (P - E)`` until the signal fires, and the
  2-term negative prompt ``N + w (P - N)`` from that step on (the step where it fires included: its N row is there);
* once every image of the batch has started, the rows are a fixed window's (P and N): no extra cost;
* after the window, CFG's (P and E).
Signal ``none`` starts every image at the window's start without measuring anything: the ``np`` mode with the same
window, row for row. The per-step record holds each image's signal and whether its negative acted.
"""

from __future__ import annotations

from .base import EMPTY, NEGATIVE, POSITIVE, GuidanceMode, Rows, Slots


class AdaptiveWindow(GuidanceMode):
    name = "adaptive"
    title = "adaptive window"
    windowed = True
    settings = ("window", "adaptive")

    def __init__(self, spec):
        super().__init__(spec)
        self.started = None  # [B] bool, from the first evaluation on
        self._peak = None  # [B] running peak of |eps_N - eps_P| (signal "gap")
        self._records: dict[int, tuple] = {}  # step -> (signal [B], acting [B]) tensors, read on demand

    @property
    def measuring(self) -> bool:
        return self.spec.adaptive.signal != "none"

    def slots(self, negative_active: bool) -> Slots:
        if not negative_active:
            return Slots(POSITIVE, self.empty, needs_correction=False)
        if not self.measuring or (self.started is not None and bool(self.started.all())):
            return Slots(POSITIVE, NEGATIVE, needs_correction=False)  # a fixed window's rows
        return Slots(POSITIVE, self.empty, (Rows(NEGATIVE),))

    def begin(self, context) -> None:
        super().begin(context)
        self.started, self._peak, self._records = None, None, {}

    # --- one evaluation ----------------------------------------------------------------------------------------
    def combine(self, plan, p, predictions):
        from ..guidance import cfg

        w = self.spec.cfg_scale
        if plan.uncond_branch == NEGATIVE or not plan.negative_active:  # a fixed window's step, or outside it
            if plan.first and plan.negative_active:
                self._record(plan.step, None, plan.uncond_branch == NEGATIVE, p[POSITIVE])
            return cfg(p[plan.uncond_branch], p[POSITIVE], w)
        import torch

        if self.started is None:
            self.started = torch.zeros(p[POSITIVE].shape[0], dtype=torch.bool, device=p[POSITIVE].device)
        if plan.first:
            signal = self._signal(plan, p)
            fires = signal >= self.spec.adaptive.threshold if self.spec.adaptive.signal == "alignment" else (
                signal <= self.spec.adaptive.threshold)
            self.started = self.started | fires
            self._record(plan.step, signal, self.started, p[POSITIVE])
        acting = self.started.view(-1, *([1] * (p[POSITIVE].ndim - 1)))
        return torch.where(acting, cfg(p[NEGATIVE], p[POSITIVE], w), cfg(p[EMPTY], p[POSITIVE], w))

    def _signal(self, plan, p):
        """The per-image signal of this step, in eps units (float32 at least)."""
        import torch

        frame, noise = self.context.frame, plan.level
        dtype = torch.promote_types(p[POSITIVE].dtype, torch.float32)
        x = plan.x.to(dtype)
        eps = {b: frame.eps(p[b].to(dtype), x, noise).flatten(1) for b in (POSITIVE, NEGATIVE, EMPTY)}
        if self.spec.adaptive.signal == "alignment":
            return torch.nn.functional.cosine_similarity(eps[NEGATIVE] - eps[EMPTY], eps[POSITIVE] - eps[EMPTY],
                                                         dim=1, eps=1e-12)
        gap = (eps[NEGATIVE] - eps[POSITIVE]).norm(dim=1)
        self._peak = gap if self._peak is None else torch.maximum(self._peak, gap)
        return gap / self._peak.clamp_min(1e-12)

    def _record(self, step: int, signal, acting, like) -> None:
        if self.context.record == "none":
            return
        import torch

        if not torch.is_tensor(acting):
            acting = torch.full((like.shape[0],), bool(acting), device=like.device)
        self._records[step] = (None if signal is None else signal.detach().float(), acting.clone())

    def step_records(self) -> dict[int, dict]:
        out = {}
        for step, (signal, acting) in self._records.items():
            row = {"negative_acting": acting.cpu().tolist()}
            if signal is not None:
                row["signal"] = signal.cpu().tolist()
            out[step] = row
        return out


def negative_starts(records: list[dict], batch_size: int) -> list[int | None]:
    """Per image, the first step (0-based) where its negative prompt acted in a pass's
    :attr:`~negguide.run.GuidanceRun.records`, None where it never did: the adaptive window's per-image starts, and
    a window's start for the other modes. A step's ``negative_acting`` (per image) wins over ``negative_active``
    (the whole batch): a CFG-owning backend never combines a fixed window's steps, whose records then hold only
    ``negative_active``."""
    starts: list[int | None] = [None] * batch_size
    for record in records:
        acting = record.get("negative_acting") or [record["negative_active"]] * batch_size
        for image, acts in enumerate(acting):
            if acts and starts[image] is None:
                starts[image] = record["step"]
    return starts
