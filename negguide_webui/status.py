"""Where a refused request's reason goes: everywhere the user looks, without a traceback."""

from __future__ import annotations

ERROR_KEY = "NegGuide error"


def refuse(p, state, errors: list[str]) -> None:
    """Stop the job before sampling and say why: in the console, in the generation info (``p.comment``:
    the UI's output area) and in ``extra_generation_params`` (the API response's ``info``)."""
    message = " ".join(errors)
    print(f"[negguide] generation stopped: {message}")
    if hasattr(p, "comment"):
        for e in errors:
            p.comment(e)
    p.extra_generation_params[ERROR_KEY] = message
    p.negguide_errors = list(errors)
    state.interrupted = True
