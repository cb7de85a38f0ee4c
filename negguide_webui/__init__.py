"""negguide's WebUI glue: A1111 and Forge-line (Forge, reForge, Forge Classic, Forge Neo) adapters, panel,
infotext, Script-dropdown workflows.

Imported by the thin files in ``scripts/``; depends on the backend-neutral core ``negguide`` and, lazily, on
the WebUI's ``modules`` (never at import time, so it can be tested without a WebUI).
"""
