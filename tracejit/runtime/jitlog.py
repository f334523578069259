"""One line per trace and per abort, like LuaJIT's -jv.

Off by default; ``TRACEJIT_LOG=-`` writes to stderr, ``TRACEJIT_LOG=PATH``
appends to a file (an unwritable path is reported once and logging stays off).
``TRACEJIT_DUMP=1`` also prints each compiled trace's IR.
"""

from __future__ import annotations

import os
import sys
import types
from typing import TYPE_CHECKING, TextIO

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

if TYPE_CHECKING:
    from tracejit.runtime.cache import CompiledTrace

_stream: TextIO | None = None
_configured = False


def _out() -> TextIO | None:
    global _stream, _configured
    if not _configured:
        _configured = True
        target = os.environ.get("TRACEJIT_LOG", "")
        if target == "-":
            _stream = sys.stderr
        elif target:
            try:
                _stream = open(target, "a", buffering=1)  # noqa: SIM115
            except OSError as exc:
                print(f"tracejit: cannot write log {target!r}: {exc}", file=sys.stderr)
    return _stream


def _where(code: types.CodeType, offset: int) -> str:
    return f"{code.co_name} {code.co_filename}:{code.co_firstlineno} @{offset // 2}"


def compiled(t: CompiledTrace) -> None:
    out = _out()
    if out is None:
        return
    nops = len(t.trace.ops)
    end = f" -> {t.end.kind} @{t.end.pc // 2}" if t.end is not None else ""
    parent = f" from exit {t.parent[1]} of {t.parent[0].trace.name}" if t.parent else ""
    print(f"[TRACE {t.trace.name}] {_where(t.code, t.start)} {t.kind}{parent}{end}, "
          f"{nops} IR ops, {t.size} bytes", file=out)
    if os.environ.get("TRACEJIT_DUMP"):
        from tracejit.ir.trace import format_trace

        print(format_trace(t.trace), file=out)


def abort(code: types.CodeType, offset: int, reason: str, detail: str, blacklisted: bool) -> None:
    out = _out()
    if out is None:
        return
    extra = f" ({detail})" if detail else ""
    black = " -- blacklisted" if blacklisted else ""
    print(f"[TRACE --- abort] {_where(code, offset)}: {reason}{extra}{black}", file=out)
