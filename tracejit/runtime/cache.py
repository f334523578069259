"""The code cache: compiled loop traces by (code object, loop header)."""

from __future__ import annotations

import types
from dataclasses import dataclass, field

from tracejit.backend.assembler import CompiledCode
from tracejit.backend.codegen import Lowered
from tracejit.ir.trace import Trace


@dataclass(slots=True, eq=False)
class CompiledLoop:
    code: types.CodeType
    header: int  # bytes
    trace: Trace
    lowered: Lowered
    compiled: CompiledCode
    entries: int = 0
    keepalive: list[object] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.compiled.size

    def exit_counts(self) -> list[int]:
        return list(self.lowered.counters)

    def free(self) -> None:
        self.compiled.free()


class CodeCache:
    def __init__(self) -> None:
        # Keyed by id(code): hashing a code object walks its bytecode and
        # constants, far too slow for every back-edge of a huge function.  A
        # cached loop holds its code, so the id cannot be reused meanwhile.
        self.loops: dict[tuple[int, int], CompiledLoop] = {}
        self.bytes = 0

    def get(self, code: types.CodeType, header: int) -> CompiledLoop | None:
        return self.loops.get((id(code), header))

    def add(self, loop: CompiledLoop) -> None:
        old = self.loops.get((id(loop.code), loop.header))
        if old is not None:
            self.discard(old)
        self.loops[(id(loop.code), loop.header)] = loop
        self.bytes += loop.size

    def discard(self, loop: CompiledLoop) -> None:
        if self.loops.get((id(loop.code), loop.header)) is loop:
            del self.loops[(id(loop.code), loop.header)]
            self.bytes -= loop.size
        loop.free()

    def clear(self) -> None:
        for loop in list(self.loops.values()):
            self.discard(loop)
