"""Every command line answers ``--help`` without importing torch or diffusers: it parses first and imports late
(under load, importing torch took 17-19 s before a help text appeared)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "diffusers", "transformers", "accelerate", "matplotlib")

# what `python -m MODULE ARGS --help` runs, and which modules it must not import
PROBE = """
import runpy, sys
sys.argv = [{module!r}, *{args!r}, "--help"]
try:
    runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
except SystemExit as done:
    code = done.code
heavy = [m for m in {heavy!r} if m in sys.modules]
print("HEAVY:" + ",".join(heavy))
sys.exit(code or 0)
"""


def train_commands() -> list[str]:
    from train.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


COMMANDS = [("negguide.generate", ()), ("negguide.toy", ()), ("train", ()),
            *(("train", (command,)) for command in train_commands())]


@pytest.mark.parametrize("module,args", COMMANDS, ids=[" ".join((m, *a)) for m, a in COMMANDS])
def test_help_imports_nothing_heavy(module, args):
    code = PROBE.format(module=module, args=tuple(args), heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
    heavy = done.stdout.rsplit("HEAVY:", 1)[1].strip()
    assert heavy == "", f"python -m {module} {' '.join(args)} --help imported {heavy}"
