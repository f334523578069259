"""Copy-and-patch backend: C stencils, their build, the assembler, executable memory."""

from __future__ import annotations

import platform
import sys

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py


def _reason() -> str:
    if sys.version_info[:2] != (3, 13) or sys.implementation.name != "cpython":
        return "the stencils are built for CPython 3.13"
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return "the stencils are built for x86-64 Linux"
    return ""


UNAVAILABLE_REASON: str = _reason()
AVAILABLE: bool = UNAVAILABLE_REASON == ""
