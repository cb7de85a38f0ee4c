"""Files a reader (or a resumed sweep) sees whole or not at all: written beside their place, then renamed into it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to ``<path>.tmp``, then one ``os.replace`` onto ``path`` (one writer per path)."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
