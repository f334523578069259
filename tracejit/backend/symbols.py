"""Addresses of C symbols (the C-API, libc) in the running process."""

from __future__ import annotations

import ctypes
import functools

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
