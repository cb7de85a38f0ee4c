"""What the plot node shows: a summary of every sampling pass a negguide node guided in the latest prompt.

A node's ``trace`` output is this object. It holds plain numbers only, written when a pass has finished (an
interrupted pass writes nothing), and forgets the passes of an earlier prompt when the first pass of a new prompt
starts: a later prompt never sees stale records, and two passes of one prompt (a base and a hires pass) are
plotted together. Guidance state itself never lives here; it lives in the pass (see ``guided_pass``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from negguide import negative_starts


def current_prompt_id() -> str | None:
    """The prompt ComfyUI is executing (None outside an execution, or on ComfyUI versions without the context)."""
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:
        return None
    context = get_executing_context()
    return None if context is None else context.prompt_id


def current_node_id() -> str | None:
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:
        return None
    context = get_executing_context()
    return None if context is None else context.node_id


@dataclass
class PassSummary:
    title: str  # the mode, as the node calls it
    sampler: str
    tracker: str | None  # DNG's tracker, None for other modes
    batch_size: int
    steps: int
    evaluations: int  # model evaluations (second-order samplers: up to two per step)
    rows: int  # model rows evaluated, every image and branch together
    records: list[dict]  # GuidanceRun.records: per step sigma, negative_active, DNG's p and lambda per image
    final_p: list[float] | None = None  # DNG's posterior after the last step, per image
    node: str | None = None  # the sampler node's id
    idle: str | None = None  # why the negative prompt acted on no step, if it did not

    @property
    def rows_per_image_per_step(self) -> float:
        return self.rows / max(self.batch_size * self.steps, 1)

    def describe(self) -> str:
        where = f"node {self.node}, " if self.node is not None else ""
        tracker = f", tracker {self.tracker}" if self.tracker else ""
        active = sum(1 for r in self.records if r["negative_active"])
        starts = ""
        if any("negative_acting" in r for r in self.records):  # per-image starts (the adaptive window)
            steps = [("never" if s is None else str(s + 1)) for s in negative_starts(self.records, self.batch_size)]
            starts = f", negative started per image at step {', '.join(steps)}"
        return (f"{self.title} ({where}{self.sampler}{tracker}): {self.steps} steps, batch {self.batch_size}, "
                f"{self.evaluations} model evaluations, {self.rows_per_image_per_step:.2f} rows per image and step, "
                f"negative active on {active} of {len(self.records)} steps{starts}"
                + (f"; the negative prompt never acted ({self.idle})" if self.idle else ""))


@dataclass
class Trace:
    passes: list[PassSummary] = field(default_factory=list)
    prompt_id: str | None = None

    def start_pass(self) -> None:
        """Called when a pass starts: a pass of another prompt (or outside a prompt) starts a new record."""
        prompt = current_prompt_id()
        if prompt is None or prompt != self.prompt_id:
            self.passes.clear()
        self.prompt_id = prompt

    def add(self, summary: PassSummary) -> None:
        self.passes.append(summary)

    def describe(self) -> str:
        if not self.passes:
            return "negguide: no guided pass has finished yet"
        return "\n".join(f"pass {i + 1}: {p.describe()}" for i, p in enumerate(self.passes))
