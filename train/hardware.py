"""The processor a measurement ran on, for the records that report speed or samples (a report names its CPU)."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), with "AVX512-BF16" when the CPU has it (CPUs of the same
    name differ there, and it decides bf16 speed); else what ``platform`` knows (often only "x86_64")."""
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
        if models:
            return models[0] + (" with AVX512-BF16" if "avx512_bf16" in flags else "")
    return platform.processor() or platform.machine()
