"""Why a Hugging Face hub id could not be read, in one sentence a user can act on.

diffusers and transformers answer a hub id they cannot reach with "... does not appear to have a file named
model_index.json", whether the repository lacks the file, does not exist, or the machine has no network: the
cause is in a warning above the error, if anywhere. The CLI asks the hub once more, itself, to tell these apart.
"""

from __future__ import annotations

import os
from pathlib import Path

_NETWORK_ERRORS = ("ConnectError", "ConnectionError", "NetworkError", "TransportError", "Timeout", "TimeoutError",
                   "ConnectTimeout", "ReadTimeout", "OfflineModeIsEnabled", "gaierror")


def is_network_error(err: BaseException) -> bool:
    """A connection failure of any HTTP client the hub library uses (requests, httpx), by the error's class."""
    return any(cls.__name__ in _NETWORK_ERRORS for cls in type(err).__mro__)


def hub_offline() -> bool:
    """Whether downloads are switched off (``HF_HUB_OFFLINE``, read now: the hub library reads it once, on import)."""
    value = os.environ.get("HF_HUB_OFFLINE")
    if value is not None:
        return value.strip().upper() in ("1", "ON", "YES", "TRUE")
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def is_cached(repo_id: str, filename: str) -> bool:
    """Whether ``filename`` of ``repo_id`` is in the local hub cache (usable without network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id, filename)
    return isinstance(found, str) and Path(found).is_file()


def unreachable_reason(repo_id: str) -> str | None:
    """Why ``repo_id`` cannot be read from the hub now: offline mode, no network, no such repository; None when it
    can be (the hub answered)."""
    if hub_offline():
        return "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
    try:
        from huggingface_hub import model_info

        model_info(repo_id, timeout=10)
    except Exception as err:  # the hub's errors come from several libraries; classify, never re-raise
        if is_network_error(err):
            return f"the Hugging Face hub cannot be reached (no network? {str(err).splitlines()[0][:120]})"
        name = type(err).__name__
        if name in ("RepositoryNotFoundError", "GatedRepoError", "RevisionNotFoundError"):
            return f"the hub has no public repository {repo_id!r} ({name})"
        return f"the hub answered {name}: {str(err).splitlines()[0][:160] if str(err) else ''}"
    return None
