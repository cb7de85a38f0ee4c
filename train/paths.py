"""Output paths made ready before any work: a run that trains for an hour must not fail at its first write."""

from __future__ import annotations

import os
from pathlib import Path

from train.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    """The project's offline data folder: ``$NEGGUIDE_SHARED`` if set, else ``../shared`` beside the checkout (the
    build machines'); nowhere else, so a user's run never silently picks up another folder named shared."""
    env = os.environ.get("NEGGUIDE_SHARED")
    return Path(env).expanduser().resolve() if env else REPO_ROOT.parent / "shared"


def _blocker(folder: Path) -> str | None:
    """What keeps us from creating `folder` or writing into it, or None."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def _make(folder: Path) -> str | None:
    """Create `folder` (parents too); what prevented it, or None."""
    blocker = _blocker(folder.absolute())
    if blocker is None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # what os.access cannot foresee: /proc, a full or read-only mount, ...
            blocker = err.strerror or str(err)
    return blocker


def make_output_folder(path: str | Path, what: str) -> None:
    """Create the folder `path` now, or end with a one-line UsageError naming `what` it is (an option)."""
    blocker = _make(Path(path))
    if blocker:
        raise UsageError(f"{what} {path} cannot be written: {blocker}")


def make_folder_for_file(path: str | Path, what: str) -> None:
    """Make sure the file `path` can be written: it is not a folder, and its folder exists (created now)."""
    blocker = "it is a folder" if Path(path).is_dir() else _make(Path(path).absolute().parent)
    if blocker:
        raise UsageError(f"{what} {path} cannot be written: {blocker}")
