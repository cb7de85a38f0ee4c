"""The WebUI's conditionings for the core's branches: which tensor goes into the cond / uncond slot and into the
extra rows a plan asks for. Pure row bookkeeping: every decision (which branch, when) comes from the plan.

Branches: ``positive`` is the WebUI's cond (all its rows in the cond slot, each image's first row elsewhere),
``negative`` its uncond as the user wrote it, ``empty`` the empty prompt's encoding. The ControlNet marker
follows the slot a conditioning goes into (cond +1024, uncond -1024); extra rows carry the marker of the slot
their branch plays (positive: cond, negative and empty: uncond).
"""

from __future__ import annotations

from . import conds as C
from .job import Job, SamplingPass

SLOT_OF_BRANCH = {"positive": "cond", "negative": "uncond", "empty": "uncond"}


class Conditionings:
    """One evaluation's conditionings: the WebUI's ``text_cond`` / ``text_uncond`` as it handed them over."""

    def __init__(self, job: Job, sampling_pass: SamplingPass, text_cond, text_uncond, is_hr: bool):
        self.job, self.sp, self.is_hr = job, sampling_pass, is_hr
        self.slots = {"cond": text_cond, "uncond": text_uncond}

    def marker(self, slot: str) -> float:
        """The ControlNet marker of a slot, read once per pass (reading it costs a device sync)."""
        key = ("marker", slot)
        if key not in self.sp.cache:
            self.sp.cache[key] = C.marker_of(self.slots[slot])
        return self.sp.cache[key]

    def body(self, branch: str, rows: list[int] | None = None):
        """A branch's conditioning without marker; ``rows``: which rows of its slot (None: all; the empty
        prompt: that many rows)."""
        if branch == "empty":
            return self._empty_rows(C.rows(self.slots["uncond"]) if rows is None else len(rows))
        slot = "cond" if branch == "positive" else "uncond"
        body = C.strip_known(self.slots[slot], self.marker(slot))
        return body if rows is None else C.select(body, rows)

    def for_slot(self, branch: str, slot: str, rows=None):
        return C.with_marker(self.body(branch, rows), self.marker(slot))

    def _empty_rows(self, n: int):
        ref = self.slots["uncond"]
        key = ("empty", n, C._ctx(ref).dtype, C._ctx(ref).device, isinstance(ref, dict))
        if key not in self.sp.cache:
            e = C.to_device(self.job.empty(self.is_hr), C._ctx(ref))
            if isinstance(ref, dict) != isinstance(e, dict) or C._ctx(e).shape[-1] != C._ctx(ref).shape[-1]:
                # e.g. the SDXL refiner took over mid-run: its conditionings differ from the base model's
                raise TypeError("the conditioning changed shape mid-run (refiner switch?); left unchanged")
            self.sp.cache[key] = C.as_class_of(ref, C.repeat_rows(e, n))
        return self.sp.cache[key]

    def uncond_slot(self, branch: str):
        """``text_uncond`` holding ``branch`` (row count unchanged)."""
        if branch == "negative":
            return self.slots["uncond"]  # stock: untouched
        if branch == "positive" and C.rows(self.slots["cond"]) != C.rows(self.slots["uncond"]):
            raise ValueError("the prompt has several AND parts: the uncond slot holds one prompt per image")
        return self.for_slot(branch, "uncond")

    def cond_part(self, cond_branch: str, extra: list, first_cond_rows: list[int] | None = None):
        """The cond slot's conditioning (``cond_branch``, row count unchanged) followed by one conditioning per
        extra row group (:class:`negguide.run.Rows`: one row per image, or per image of ``rows.images``), all
        padded to one token length so that they share one batched UNet call (the WebUI's own way, see
        :func:`conds.pad_tokens`)."""
        n_cond = C.rows(self.slots["cond"])
        if cond_branch == "positive" and not extra:
            return [self.slots["cond"]]  # stock: untouched
        if cond_branch != "positive" and n_cond != C.rows(self.slots["uncond"]):
            raise ValueError("the prompt has several AND parts: the cond slot cannot take another prompt")
        parts = [(self.body(cond_branch, None if cond_branch == "positive" else list(range(n_cond))),
                  self.marker("cond"))]
        for rows in extra:
            images = list(range(C.rows(self.slots["uncond"]))) if rows.images is None else list(rows.images)
            picked = [first_cond_rows[i] for i in images] if rows.branch == "positive" else images
            parts.append((self.body(rows.branch, picked), self.marker(SLOT_OF_BRANCH[rows.branch])))
        n = max(C.tokens(body) for body, _ in parts)
        empty = self.job.empty(self.is_hr)
        return [C.with_marker(C.pad_tokens(body, n, empty), marker) for body, marker in parts]
