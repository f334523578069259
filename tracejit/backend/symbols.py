"""Addresses of C symbols (the C-API, libc) in the running process."""

from __future__ import annotations

import ctypes
import functools

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

_LIBRARIES: tuple[ctypes.CDLL, ...] = (ctypes.pythonapi, ctypes.CDLL(None))


class UnresolvedSymbol(LookupError):
    pass


@functools.cache
def address_of(name: str) -> int:
    """The address of the function or data symbol ``name`` (dlsym)."""
    for lib in _LIBRARIES:
        try:
            return ctypes.addressof(ctypes.c_char.in_dll(lib, name))
        except ValueError:
            continue
    raise UnresolvedSymbol(f"symbol {name!r} is not exported by this process")
