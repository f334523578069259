"""Executable memory from mmap, through libc with ctypes.

Pages are mapped read+write, filled, then switched to read+execute (code) or
read-only (data) with mprotect; a page is never writable and executable at
the same time.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from typing import Final

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

PAGE_SIZE: Final = mmap.PAGESIZE
PROT_READ: Final = mmap.PROT_READ
PROT_WRITE: Final = mmap.PROT_WRITE
PROT_EXEC: Final = mmap.PROT_EXEC
PROT_RW: Final = PROT_READ | PROT_WRITE
PROT_RX: Final = PROT_READ | PROT_EXEC

_MAP_PRIVATE: Final = mmap.MAP_PRIVATE
_MAP_ANONYMOUS: Final = mmap.MAP_ANONYMOUS
_MAP_FAILED: Final = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_mmap.restype = ctypes.c_void_p
_mprotect = _libc.mprotect
_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_mprotect.restype = ctypes.c_int
_munmap = _libc.munmap
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_munmap.restype = ctypes.c_int


class MemoryMapError(OSError):
    """mmap/mprotect/munmap failed."""


def _fail(what: str) -> MemoryMapError:
    err = ctypes.get_errno()
    return MemoryMapError(err, f"{what} failed: {os.strerror(err)}")


def round_up(n: int, align: int = PAGE_SIZE) -> int:
    return (n + align - 1) & ~(align - 1)


def map_rw(size: int) -> int:
    """Map ``size`` bytes (a multiple of the page size) read+write; return the address."""
    addr = _mmap(None, size, PROT_RW, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)
    if addr is None or addr == _MAP_FAILED:
        raise _fail("mmap")
    return int(addr)


def protect(addr: int, size: int, prot: int) -> None:
    if _mprotect(addr, size, prot) != 0:
        raise _fail("mprotect")


def unmap(addr: int, size: int) -> None:
    if _munmap(addr, size) != 0:
        raise _fail("munmap")


def write(addr: int, data: bytes | bytearray) -> None:
    """Copy ``data`` to ``addr`` (which must be writable)."""
    ctypes.memmove(addr, bytes(data) if isinstance(data, bytearray) else data, len(data))
