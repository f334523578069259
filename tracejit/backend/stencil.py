"""Stencils and holes: the data model of the generated stencil table.

The table itself (``tracejit/backend/_generated/<target>.py``) is written by
``python -m tracejit.backend.build`` and holds plain literals; this module
turns it into :class:`Stencil` objects and knows the operand signature of
every machine op of docs/backend.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Final, Literal

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

#: Module (under ``tracejit.backend._generated``) holding the table for the
#: only supported target.
TABLE_MODULE: Final = "x86_64_linux_cp313"

Section = Literal["code", "data"]

#: Relocation kinds the build may emit and the loader knows how to patch.
#:  - ``R_X86_64_64``: 64-bit absolute ``S + A`` (operands, data addresses,
#:    addresses of C-API data such as ``_Py_TrueStruct``).
#:  - ``R_X86_64_32S`` / ``R_X86_64_32``: a 32-bit displacement, sign- or
#:    zero-extended (``_JIT_OFFSETk``: operand k times 8).
#:  - ``R_X86_64_PC32`` / ``R_X86_64_PLT32``: 32-bit ``S + A - P`` (jumps to
#:    ``_JIT_CONTINUE``/``_JIT_TARGET``/``_JIT_EXIT``/``_JIT_ERROR``).
#:  - ``R_X86_64_GOTPCRELX`` / ``R_X86_64_REX_GOTPCRELX`` /
#:    ``R_X86_64_GOTPCREL``: 32-bit ``G + A - P`` to the trace's GOT entry of
#:    a C-API function (``-fno-plt`` calls).
KNOWN_KINDS: Final = frozenset(
    {
        "R_X86_64_64",
        "R_X86_64_32",
        "R_X86_64_32S",
        "R_X86_64_PC32",
        "R_X86_64_PLT32",
        "R_X86_64_GOTPCREL",
        "R_X86_64_GOTPCRELX",
        "R_X86_64_REX_GOTPCRELX",
    }
)
ABS64_KINDS: Final = frozenset({"R_X86_64_64"})
ABS32_KINDS: Final = frozenset({"R_X86_64_32", "R_X86_64_32S"})
REL32_KINDS: Final = frozenset({"R_X86_64_PC32", "R_X86_64_PLT32"})
GOT_KINDS: Final = frozenset({"R_X86_64_GOTPCREL", "R_X86_64_GOTPCRELX", "R_X86_64_REX_GOTPCRELX"})

#: Hole symbols with a meaning to the loader. Any other symbol is either
#: ``DATA_SYMBOL`` (the stencil's own data, addend relative to its start),
#: ``CODE_SYMBOL`` (the stencil's own code) or a C-API symbol resolved in the
#: running process.
CONTINUE: Final = "_JIT_CONTINUE"
TARGET: Final = "_JIT_TARGET"
EXIT: Final = "_JIT_EXIT"
ERROR: Final = "_JIT_ERROR"
JUMP_SYMBOLS: Final = (CONTINUE, TARGET, EXIT, ERROR)
OPERAND_SYMBOLS: Final = ("_JIT_OPERAND0", "_JIT_OPERAND1", "_JIT_OPERAND2", "_JIT_OPERAND3")
#: Operand k times 8 as a 32-bit displacement (register and frame-slot offsets).
OFFSET_SYMBOLS: Final = ("_JIT_OFFSET0", "_JIT_OFFSET1", "_JIT_OFFSET2", "_JIT_OFFSET3")
DATA_SYMBOL: Final = "@data"
CODE_SYMBOL: Final = "@code"

ENTRY: Final = "trace_entry"

#: Operand signature of every machine op of docs/backend.md, in order.
#: ``r``: register index, ``s``: frame slot index (``localsplus``), ``i``: an
#: immediate (int64, object or C function address, counter address, ...).
OPERANDS: Final[dict[str, str]] = {
    "load_slot": "rs",
    "store_local": "rs",
    "store_local_int": "rs",
    "store_local_float": "rs",
    "store_slot_raw": "rs",
    "const": "ri",
    "copy": "rr",
    "incref": "r",
    "decref": "r",
    "xdecref": "r",
    "guard_type": "ri",
    "guard_is": "ri",
    "guard_is_not": "ri",
    "guard_true": "r",
    "guard_false": "r",
    "guard_dict_str_keys": "r",
    "unbox_int": "rr",
    "box_int": "rr",
    "unbox_float": "rr",
    "box_float": "rr",
    "box_bool": "rr",
    "is_true": "rr",
    "int_add": "rrr",
    "int_sub": "rrr",
    "int_mul": "rrr",
    "int_floordiv": "rrr",
    "int_mod": "rrr",
    "int_and": "rrr",
    "int_or": "rrr",
    "int_xor": "rrr",
    "int_lshift": "rrr",
    "int_rshift": "rrr",
    "int_neg": "rr",
    "int_lt": "rrr",
    "int_le": "rrr",
    "int_eq": "rrr",
    "int_ne": "rrr",
    "int_gt": "rrr",
    "int_ge": "rrr",
    "float_add": "rrr",
    "float_sub": "rrr",
    "float_mul": "rrr",
    "float_div": "rrr",
    "float_pow": "rrr",
    "float_neg": "rr",
    "float_lt": "rrr",
    "float_le": "rrr",
    "float_eq": "rrr",
    "float_ne": "rrr",
    "float_gt": "rrr",
    "float_ge": "rrr",
    "int_to_float": "rr",
    "call_unary": "rri",
    "call_binary": "rrri",
    "richcompare": "rrri",
    "getattr": "rri",
    "setattr": "rir",
    "setitem": "rrr",
    "call_vector": "rri",
    "call_py": "rrii",
    "build_tuple": "rri",
    "contains": "rrri",
    "build_string": "rrii",
    "build_list": "rri",
    "list_extend": "rr",
    "get_slice": "rrrr",
    "build_const_key_map": "rrii",
    "call_vector_kw": "rrii",
    "call_meth_o": "rrri",
    "call_meth_noargs": "rri",
    "call_meth_fast": "rrii",
    "call_meth_fastkw": "rrii",
    "call_meth_fast_c": "rrii",
    "call_meth_fastkw_c": "rrii",
    "bytes_decode_utf8": "rr",
    "len": "rr",
    "ob_size": "rr",
    "list_getitem": "rrr",
    "tuple_getitem": "rrr",
    "list_getitem_borrowed": "rrr",
    "tuple_getitem_borrowed": "rrr",
    "list_getitem_c": "rri",
    "tuple_getitem_c": "rri",
    "list_getitem_borrowed_c": "rri",
    "tuple_getitem_borrowed_c": "rri",
    "guard_size": "ri",
    "guard_unbox_float": "rri",
    "list_setitem": "rrr",
    "list_append": "rr",
    "decref_out": "r",
    "list_append_out": "rr",
    "str_replace_chain": "rri",
    "store_local_out": "rs",
    "list_setitem_float": "rrr",
    "list_setitem_float_c": "rir",
    "range_iter_next": "rr",
    "list_iter_next": "rr",
    "tuple_iter_next": "rr",
    "iter_next": "rr",
    "iter_next_null": "rr",
    "set_ip": "i",
    "check_instrumentation": "iii",
    "guard_pure_call": "i",
    "guard_global": "ii",
    "load_global": "ri",
    "check_eval_breaker": "",
    "jump": "",
    "exit_count": "i",
    "exit_finish": "iii",
    "exit_write": "ii",
    "load_field": "rri",
    "store_cell": "rr",
    "make_function": "rr",
    "set_function_attribute": "rri",
    "guard_field_is": "rii",
    "fetch_exc": "r",
    "guard_type_version": "ii",
}


@dataclass(frozen=True, slots=True)
class Hole:
    """One relocation of a stencil: patch ``kind`` at ``offset`` of ``section``."""

    section: Section
    kind: str
    offset: int
    symbol: str
    addend: int


@dataclass(frozen=True, slots=True)
class Stencil:
    """Code and data bytes of one op with the holes to patch in them."""

    name: str
    code: bytes
    data: bytes
    holes: tuple[Hole, ...]

    @property
    def trailing_continue(self) -> bool:
        """True if the code ends with ``jmp _JIT_CONTINUE`` (5 bytes, rel32).

        The loader drops those 5 bytes when the next op follows directly.
        """
        end = len(self.code)
        return (
            end >= 5
            and self.code[end - 5] == 0xE9
            and any(
                h.section == "code"
                and h.symbol == CONTINUE
                and h.offset == end - 4
                and h.kind in REL32_KINDS
                for h in self.holes
            )
        )

    def operands_used(self) -> int:
        """1 + the highest operand index the code refers to (0 if none)."""
        used = 0
        for h in self.holes:
            if h.symbol in OPERAND_SYMBOLS:
                used = max(used, OPERAND_SYMBOLS.index(h.symbol) + 1)
            elif h.symbol in OFFSET_SYMBOLS:
                used = max(used, OFFSET_SYMBOLS.index(h.symbol) + 1)
        return used


RawHole = tuple[str, str, int, str, int]
RawStencil = tuple[bytes, bytes, tuple[RawHole, ...]]


def _section(name: str) -> Section:
    if name == "code":
        return "code"
    if name == "data":
        return "data"
    raise ValueError(f"bad hole section {name!r}")


def from_raw(name: str, raw: RawStencil) -> Stencil:
    code, data, holes = raw
    return Stencil(
        name=name,
        code=code,
        data=data,
        holes=tuple(Hole(_section(s), k, o, sym, a) for s, k, o, sym, a in holes),
    )


def table_module() -> ModuleType:
    return importlib.import_module(f"tracejit.backend._generated.{TABLE_MODULE}")


def load_stencils() -> dict[str, Stencil]:
    """Load the committed stencil table: op name -> Stencil (plus ``trace_entry``)."""
    raw: dict[str, RawStencil] = table_module().STENCILS
    return {name: from_raw(name, value) for name, value in raw.items()}
