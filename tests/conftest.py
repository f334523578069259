"""Shared test fixtures (keep this file small)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Verify the IR after every optimizer pass, here and in the programs tests run.
os.environ["TRACEJIT_VERIFY"] = "1"

RunTracejit = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def run_tracejit() -> RunTracejit:
    """Run ``python -m tracejit ARGS...`` in a subprocess with this interpreter
    (the venv's CPython 3.13); returns the CompletedProcess (text mode)."""

    def run(
        *args: str, cwd: str | Path | None = None, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [environment.get("PYTHONPATH")])]
        )
        environment.update(env)
        return subprocess.run(
            [sys.executable, "-m", "tracejit", *args],
            cwd=cwd,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    return run
