"""The study's sizes (cases, seeds, the window grid): plain data without torch, so that ``python -m train --help``
builds the ``t2i-study --size`` choices without importing the study."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StudySize:
    name: str
    object_cases: int
    attribute_cases: int
    seeds: int
    trace_cases: int  # cases of section a (x0 decoded and attention captured at every step)
    grid_cases: int  # cases of the window-start sweep
    grid_starts: tuple[int, ...]
    grid_lengths: tuple[int, ...]
    adherence_cases: int
    concept_cases: int
    steps: int = 30
    seed: int = 0


STUDY_SIZES = {
    "smoke": StudySize("smoke", 2, 2, 1, 2, 2, (1, 10), (2, 30), 2, 2, steps=10),
    # 2,896 images: 32 min on 2 threads of a busy 2-core AMD EPYC (1.53 image/s; the budget is 1.5 h)
    "cpu": StudySize("cpu", 32, 24, 2, 24, 12, (1, 3, 5, 7, 9, 12, 15, 20), (2, 4, 8, 30), 48, 24),
    "gpu": StudySize("gpu", 320, 320, 4, 160, 160, (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 20, 24),
                     (1, 2, 3, 4, 6, 8, 12, 16, 30), 480, 320),
}
