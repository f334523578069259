"""Values computed once per code object and forgotten when it dies.

Keyed by ``id(code)``: hashing a code object walks its bytecode and constants,
far too slow for every back-edge of a huge function.  The code object is held
weakly, and its entry goes in the weakref callback, before the id can be
reused.
"""

from __future__ import annotations

import types
import weakref
from collections.abc import Callable

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py


class PerCode[T]:
    def __init__(self, make: Callable[[types.CodeType], T]) -> None:
        self._make = make
        self._entries: dict[int, tuple[weakref.ReferenceType[types.CodeType], T]] = {}

    def get(self, code: types.CodeType) -> T:
        key = id(code)
        hit = self._entries.get(key)
        if hit is not None and hit[0]() is code:
            return hit[1]
        entries = self._entries

        def forget(_: object) -> None:
            try:
                entries.pop(key, None)
            except Exception:
                pass  # at exit, with this module torn down

        value = self._make(code)
        entries[key] = (weakref.ref(code, forget), value)
        return value
