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

if TYPE_CHECKING:
    from tracejit.runtime.cache import CompiledLoop

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


def compiled(loop: CompiledLoop) -> None:
    out = _out()
    if out is None:
        return
    nops = len(loop.trace.ops)
    print(f"[TRACE {loop.trace.name}] {_where(loop.code, loop.header)} loop, "
          f"{nops} IR ops, {loop.size} bytes", file=out)
    if os.environ.get("TRACEJIT_DUMP"):
        from tracejit.ir.trace import format_trace

        print(format_trace(loop.trace), file=out)


def abort(code: types.CodeType, offset: int, reason: str, detail: str, blacklisted: bool) -> None:
    out = _out()
    if out is None:
        return
    extra = f" ({detail})" if detail else ""
    black = " -- blacklisted" if blacklisted else ""
    print(f"[TRACE --- abort] {_where(code, offset)}: {reason}{extra}{black}", file=out)
