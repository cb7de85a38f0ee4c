"""`log.jsonl` of a run folder: one JSON record per line (step, loss, img/s, LR, events), appended as training goes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def append_log(run_dir: Path, record: dict[str, Any]) -> None:
    with open(run_dir / "log.jsonl", "a") as f:
        f.write(json.dumps(record | {"time": round(time.time(), 3)}) + "\n")
