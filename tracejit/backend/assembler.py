"""Copy-and-patch loader: lay out stencils, patch their holes, map the code.

Memory layout of one compiled trace (one mmap)::

    [ trace_entry | op 0 | op 1 | ... ]  code pages, read+execute
    [ GOT | data of op 0 | data of op 1 | ... ]  data pages, read-only

The GOT holds the address of every C-API function any stencil calls
(``-fno-plt``); its content is the same for every trace, so it is computed
once per process. Per-stencil patch plans are also computed once (on first
use), so assembling only concatenates bytes and writes the holes that depend
on operands and positions.
"""

from __future__ import annotations

import ctypes
import functools
import struct
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.backend import memory, perfmap, symbols
from tracejit.backend.stencil import (
    ABS32_KINDS,
    ABS64_KINDS,
    CODE_SYMBOL,
    DATA_SYMBOL,
    ENTRY,
    GOT_KINDS,
    JUMP_SYMBOLS,
    OFFSET_SYMBOLS,
    OPERAND_SYMBOLS,
    OPERANDS,
    REL32_KINDS,
    Stencil,
    load_stencils,
)
from tracejit.frozen import frozen

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py

__all__ = [
    "MAX_REGS",
    "RuntimeFunction",
    "load_function",
    "AssemblyError",
    "CompiledCode",
    "Label",
    "MachineInstr",
    "assemble",
]

#: Largest register file trace_entry allocates (a VLA of nregs + 1 uint64
#: on the C stack: 32 KiB at most).
MAX_REGS: Final = 4096
_MASK64: Final = (1 << 64) - 1
_DATA_ALIGN: Final = 16
_pack_q = struct.Struct("<Q").pack_into
_pack_i = struct.Struct("<i").pack_into
_pack_u = struct.Struct("<I").pack_into

# int tj_call(entry address, PyFrameObject *): a PYFUNCTYPE, so the GIL stays
# held and an error the trace set is raised after the call.
_CALL_TYPE = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_uint64, ctypes.py_object)
_call_shim: Callable[[int, types.FrameType], int] | None = None


class AssemblyError(ValueError):
    """Bad machine code: unknown op, missing label or operand, ..."""


class Label:
    """A position in the code (identity object; ``name`` is for debugging)."""

    __slots__ = ("name",)

    def __init__(self, name: str = "") -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Label({self.name!r})" if self.name else f"Label(<{id(self):#x}>)"


@frozen
class MachineInstr:
    """One machine op; see docs/backend.md for ops and operands."""

    op: str
    operands: tuple[int, ...] = ()
    target: Label | None = None  # patched into _JIT_TARGET
    exit: Label | None = None  # _JIT_EXIT
    error: Label | None = None  # _JIT_ERROR


# ---------------------------------------------------------------------------
# Patch plans (computed once)

_J_CONTINUE, _J_TARGET, _J_EXIT, _J_ERROR = range(4)


@dataclass(frozen=True, slots=True)
class _Plan:
    name: str
    code: bytes  # constant holes already patched
    trimmed: bytes  # code without the trailing `jmp _JIT_CONTINUE`
    arity: int  # number of operands expected
    operand_holes: tuple[tuple[int, int, int], ...]  # (offset, k, addend)
    # 32-bit displacements 8 * operand k + addend: (offset, k, addend, signed)
    offset_holes: tuple[tuple[int, int, int, bool], ...]
    jump_holes: tuple[tuple[int, int, int], ...]  # (offset, _J_*, addend)
    trimmed_jump_holes: tuple[tuple[int, int, int], ...]
    got_holes: tuple[tuple[int, int, int], ...]  # (offset, got index, addend)
    code_abs_holes: tuple[tuple[int, bool, int], ...]  # (offset, is_data, addend)
    # rip-relative references to the stencil's own data (constant pools)
    code_rel_data_holes: tuple[tuple[int, int], ...]  # (offset, addend)
    data: bytes
    data_abs_holes: tuple[tuple[int, bool, int], ...]
    uses: tuple[bool, bool, bool, bool]  # continue, target, exit, error


@dataclass(frozen=True, slots=True)
class _Tables:
    plans: dict[str, _Plan]
    got: bytes


_tables: _Tables | None = None


def _make_plan(stencil: Stencil, got_index: dict[str, int]) -> _Plan:
    code = bytearray(stencil.code)
    operand_holes: list[tuple[int, int, int]] = []
    offset_holes: list[tuple[int, int, int, bool]] = []
    jump_holes: list[tuple[int, int, int]] = []
    got_holes: list[tuple[int, int, int]] = []
    code_abs: list[tuple[int, bool, int]] = []
    code_rel_data: list[tuple[int, int]] = []
    data_abs: list[tuple[int, bool, int]] = []
    name = stencil.name
    for h in stencil.holes:
        where = f"stencil {name}: hole {h.kind} {h.symbol} at {h.section}+{h.offset}"
        if h.symbol in OPERAND_SYMBOLS:
            if h.kind not in ABS64_KINDS or h.section != "code":
                raise AssemblyError(f"{where}: operands must be 64-bit absolute in code")
            operand_holes.append((h.offset, OPERAND_SYMBOLS.index(h.symbol), h.addend))
        elif h.symbol in OFFSET_SYMBOLS:
            if h.kind not in ABS32_KINDS or h.section != "code":
                raise AssemblyError(f"{where}: offsets must be 32-bit absolute in code")
            offset_holes.append((h.offset, OFFSET_SYMBOLS.index(h.symbol), h.addend,
                                 h.kind == "R_X86_64_32S"))
        elif h.symbol in JUMP_SYMBOLS:
            if h.kind not in REL32_KINDS or h.section != "code":
                raise AssemblyError(f"{where}: jumps must be rel32 in code")
            jump_holes.append((h.offset, JUMP_SYMBOLS.index(h.symbol), h.addend))
        elif h.symbol == DATA_SYMBOL and h.kind in REL32_KINDS and h.section == "code":
            code_rel_data.append((h.offset, h.addend))
        elif h.symbol in (DATA_SYMBOL, CODE_SYMBOL):
            if h.kind not in ABS64_KINDS:
                raise AssemblyError(f"{where}: unsupported kind")
            entry = (h.offset, h.symbol == DATA_SYMBOL, h.addend)
            (code_abs if h.section == "code" else data_abs).append(entry)
        elif h.kind in GOT_KINDS:
            if h.section != "code":
                raise AssemblyError(f"{where}: GOT reference outside code")
            got_holes.append((h.offset, got_index[h.symbol], h.addend))
        elif h.kind in ABS64_KINDS:
            if h.section != "code":
                raise AssemblyError(f"{where}: absolute C-API address in data")
            value = (symbols.address_of(h.symbol) + h.addend) & _MASK64
            _pack_q(code, h.offset, value)  # same for every trace
        else:
            raise AssemblyError(f"{where}: unsupported")
    full = bytes(code)
    if stencil.trailing_continue:
        cut = len(full) - 5
        trimmed = full[:cut]
        trimmed_jumps = tuple(j for j in jump_holes if j[0] < cut)
    else:
        trimmed = full
        trimmed_jumps = tuple(jump_holes)
    used = {j[1] for j in jump_holes}
    arity = len(OPERANDS[name]) if name in OPERANDS else stencil.operands_used()
    if stencil.operands_used() > arity:
        raise AssemblyError(f"stencil {name} uses more operands than its signature")
    return _Plan(
        name=name,
        code=full,
        trimmed=trimmed,
        arity=arity,
        operand_holes=tuple(operand_holes),
        offset_holes=tuple(offset_holes),
        jump_holes=tuple(jump_holes),
        trimmed_jump_holes=trimmed_jumps,
        got_holes=tuple(got_holes),
        code_abs_holes=tuple(code_abs),
        code_rel_data_holes=tuple(code_rel_data),
        data=stencil.data,
        data_abs_holes=tuple(data_abs),
        uses=(_J_CONTINUE in used, _J_TARGET in used, _J_EXIT in used, _J_ERROR in used),
    )


_GOT_RUNTIME: Final = "tjrt_"


def _load_tables() -> _Tables:
    global _tables
    if _tables is None:
        stencils = load_stencils()
        got_symbols = sorted(
            {h.symbol for s in stencils.values() for h in s.holes if h.kind in GOT_KINDS}
        )
        got_index = {name: i for i, name in enumerate(got_symbols)}
        plans = {name: _make_plan(s, got_index) for name, s in stencils.items()}
        # tjrt_NAME is the runtime function tj_NAME (ops.c, "out-of-line
        # forms"): mapped with the C-API part of the GOT, then entered in it.
        addresses = [0 if n.startswith(_GOT_RUNTIME) else symbols.address_of(n)
                     for n in got_symbols]
        _tables = _Tables(plans=plans, got=struct.pack(f"<{len(addresses)}Q", *addresses))
        for i, n in enumerate(got_symbols):
            if n.startswith(_GOT_RUNTIME):
                addresses[i] = runtime_address("tj_" + n[len(_GOT_RUNTIME):])
        _tables = _Tables(plans=plans, got=struct.pack(f"<{len(addresses)}Q", *addresses))
    return _tables


def warm_up() -> None:
    """Compute the patch plans now rather than on the first ``assemble``."""
    _load_tables()


# ---------------------------------------------------------------------------
# Compiled code


def _freed_entry(frame: types.FrameType) -> int:
    raise RuntimeError("this trace's code was freed")


def _entry_from_python(address: int) -> Callable[[types.FrameType], int]:
    # A C callable all the way (partial of a ctypes function): a Python frame in
    # between would resume from the instr_ptr the trace wrote into its caller.
    global _call_shim
    if _call_shim is None:
        _call_shim = _CALL_TYPE(load_function("tj_call", ()).address)
    return functools.partial(_call_shim, address)


class CompiledCode:
    """A mapped trace. ``entry(frame)`` runs it; ``free()`` unmaps it.

    ``address`` is ``int trace_entry(_PyInterpreterFrame *, PyThreadState *)``
    (what the native dispatcher calls).  ``entry(frame)`` calls it from Python
    through a ``ctypes.PYFUNCTYPE``: the GIL stays held while the native code
    runs, and the int returned by ``exit_finish`` is returned; when the code
    takes an error exit (a negative code after an op raised), the pending
    Python exception is raised by ``entry`` itself instead of returning.
    """

    __slots__ = (
        "_code_size",
        "_freed",
        "_index",
        "_labels",
        "address",
        "entry",
        "size",
    )

    address: int
    size: int
    entry: Callable[[types.FrameType], int]

    def __init__(
        self,
        base: int,
        size: int,
        code_size: int,
        labels: dict[Label, int],
        index: list[tuple[int, _Plan | None, bool]],
    ) -> None:
        self.address = base
        self.size = size
        self._code_size = code_size
        self._labels = labels
        self._index = index
        self._freed = False
        self.entry = _entry_from_python(base)

    @property
    def code_size(self) -> int:
        """Bytes of machine code (the rest of ``size`` is GOT, data and padding)."""
        return self._code_size

    @property
    def freed(self) -> bool:
        return self._freed

    def free(self) -> None:
        """Unmap the code (idempotent). ``entry`` raises RuntimeError afterwards."""
        if self._freed:
            return
        self._freed = True
        self.entry = _freed_entry
        memory.unmap(self.address, self.size)

    def label_offset(self, label: Label) -> int:
        """Code offset (from ``address``) of a label placed in the assembled code."""
        try:
            return self._labels[label]
        except KeyError:
            raise AssemblyError(f"{label!r} is not in this code") from None

    def instr_offset(self, index: int) -> int:
        """Code offset of ``code[index]`` as passed to ``assemble``."""
        return self._index[index][0]

    def exit_holes(self, index: int) -> list[int]:
        """Addresses of the rel32 fields of ``code[index]``'s jumps to its exit."""
        offset, plan, trimmed = self._index[index]
        if plan is None:
            raise AssemblyError(f"code[{index}] is a label, not an instruction")
        holes = plan.trimmed_jump_holes if trimmed else plan.jump_holes
        return [self.address + offset + o for o, j, _ in holes if j == _J_EXIT]

    def repatch_exit(self, index: int, new_address: int) -> None:
        """Make every exit jump of ``code[index]`` go to ``new_address`` (e.g. a bridge).

        The target must be within +-2 GiB of the code (rel32 jumps). The code
        pages are made read+write for the patch and read+execute again after.
        """
        if self._freed:
            raise RuntimeError("this trace's code was freed")
        fields = self.exit_holes(index)
        if not fields:
            raise AssemblyError(f"code[{index}] has no exit jump")
        code_pages = memory.round_up(self._code_size)
        patches: list[tuple[int, bytes]] = []
        for field in fields:
            rel = new_address - (field + 4)  # all jump holes have addend -4
            if not -(1 << 31) <= rel < (1 << 31):
                raise AssemblyError(f"{new_address:#x} is out of rel32 range of the trace")
            patches.append((field, struct.pack("<i", rel)))
        memory.protect(self.address, code_pages, memory.PROT_RW)
        try:
            for field, data in patches:
                memory.write(field, data)
        finally:
            memory.protect(self.address, code_pages, memory.PROT_RX)


# ---------------------------------------------------------------------------
# Assembling


def assemble(code: Sequence[MachineInstr | Label], nregs: int) -> CompiledCode:
    """Lay out ``trace_entry`` then ``code``, patch every hole, map it executable."""
    if not 0 <= nregs <= MAX_REGS:
        raise AssemblyError(f"nregs={nregs} is out of range 0..{MAX_REGS}")
    tables = _tables if _tables is not None else _load_tables()
    plans = tables.plans
    entry_plan = plans[ENTRY]
    n = len(code)
    last = n - 1
    while last >= 0 and isinstance(code[last], Label):
        last -= 1
    if last < 0:
        raise AssemblyError("no instruction to assemble")

    # Pass 1: positions of instructions and labels.
    labels: dict[Label, int] = {}
    index: list[tuple[int, _Plan | None, bool]] = []
    chunks: list[bytes] = [entry_plan.code]
    pos = len(entry_plan.code)
    data_size = len(tables.got)
    data_offsets: list[int] = []
    for i in range(n):
        item = code[i]
        if isinstance(item, Label):
            if item in labels:
                raise AssemblyError(f"{item!r} is placed twice")
            labels[item] = pos
            index.append((pos, None, False))
            continue
        plan = plans.get(item.op)
        if plan is None or item.op == ENTRY or item.op.startswith("tj_"):
            raise AssemblyError(f"code[{i}]: unknown machine op {item.op!r}")
        if len(item.operands) != plan.arity:
            raise AssemblyError(
                f"code[{i}]: {item.op} takes {plan.arity} operands, got {len(item.operands)}"
            )
        if i == last:
            if plan.uses[_J_CONTINUE]:
                raise AssemblyError(
                    f"code[{i}]: the last instruction ({item.op}) falls through past the end"
                )
            body = plan.code
            trimmed = False
        else:
            body = plan.trimmed
            trimmed = body is not plan.code
        index.append((pos, plan, trimmed))
        chunks.append(body)
        pos += len(body)
        if plan.data:
            data_size = (data_size + _DATA_ALIGN - 1) & ~(_DATA_ALIGN - 1)
            data_offsets.append(data_size)
            data_size += len(plan.data)
        else:
            data_offsets.append(-1)
    code_size = pos
    code_pages = memory.round_up(code_size)
    total = code_pages + memory.round_up(max(data_size, 1))
    base = memory.map_rw(total)
    try:
        buf = bytearray(b"".join(chunks))
        data = bytearray(tables.got)
        data.extend(b"\0" * (data_size - len(data)))
        got_off = code_pages  # GOT is at the start of the data pages
        data_base = base + code_pages

        # trace_entry: nregs, continue at the first instruction.
        first = index[0][0] if index else len(entry_plan.code)
        for o, _k, a in entry_plan.operand_holes:
            _pack_q(buf, o, (nregs + a) & _MASK64)
        for o, _j, a in entry_plan.jump_holes:
            _pack_i(buf, o, first + a - o)
        for o, g, a in entry_plan.got_holes:
            _pack_i(buf, o, got_off + 8 * g + a - o)

        # Pass 2: patch every instruction.
        di = 0
        for i in range(n):
            off, plan_or_none, trimmed = index[i]
            if plan_or_none is None:
                continue
            plan = plan_or_none
            item = code[i]
            assert isinstance(item, MachineInstr)
            if plan.operand_holes:
                ops = item.operands
                for o, k, a in plan.operand_holes:
                    _pack_q(buf, off + o, (ops[k] + a) & _MASK64)
            if plan.offset_holes:
                ops = item.operands
                for o, k, a, signed in plan.offset_holes:
                    v = 8 * ops[k] + a
                    if not (-(1 << 31) <= v < (1 << 31) if signed else 0 <= v < (1 << 32)):
                        raise AssemblyError(f"code[{i}]: {item.op} operand {k} ({ops[k]}) "
                                            "is out of range for a 32-bit offset")
                    (_pack_i if signed else _pack_u)(buf, off + o, v)
            if plan.jump_holes:
                nxt = index[i + 1][0] if i + 1 < n else code_size
                dests = [nxt, -1, -1, -1]
                uses = plan.uses
                if uses[_J_TARGET]:
                    dests[_J_TARGET] = _label_pos(labels, item.target, i, item.op, "target")
                if uses[_J_EXIT]:
                    dests[_J_EXIT] = _label_pos(labels, item.exit, i, item.op, "exit")
                if uses[_J_ERROR]:
                    dests[_J_ERROR] = _label_pos(labels, item.error, i, item.op, "error")
                for o, j, a in plan.trimmed_jump_holes if trimmed else plan.jump_holes:
                    p = off + o
                    _pack_i(buf, p, dests[j] + a - p)
            for o, g, a in plan.got_holes:
                p = off + o
                _pack_i(buf, p, got_off + 8 * g + a - p)
            if plan.data:
                doff = data_offsets[di]
                data[doff : doff + len(plan.data)] = plan.data
                for o, is_data, a in plan.data_abs_holes:
                    value = (data_base + doff + a) if is_data else (base + off + a)
                    _pack_q(data, doff + o, value & _MASK64)
                for o, is_data, a in plan.code_abs_holes:
                    value = (data_base + doff + a) if is_data else (base + off + a)
                    _pack_q(buf, off + o, value & _MASK64)
                for o, a in plan.code_rel_data_holes:
                    # data pages follow the code in the same mapping: within rel32
                    _pack_i(buf, off + o, (code_pages + doff + a) - (off + o))
            elif plan.code_abs_holes:
                for o, is_data, a in plan.code_abs_holes:
                    if is_data:
                        raise AssemblyError(f"stencil {plan.name}: data hole without data")
                    _pack_q(buf, off + o, (base + off + a) & _MASK64)
            di += 1

        ctypes.memmove(base, bytes(buf), code_size)
        ctypes.memmove(data_base, bytes(data), len(data))
        memory.protect(base, code_pages, memory.PROT_RX)
        memory.protect(data_base, total - code_pages, memory.PROT_READ)
    except BaseException:
        memory.unmap(base, total)
        raise
    if perfmap.enabled():
        _write_perfmap(base, code, index, code_size)
    # Labels after the last instruction have no code; keep them for offsets.
    return CompiledCode(base, total, code_size, labels, index)


def _write_perfmap(base: int, code: Sequence[MachineInstr | Label],
                   index: list[tuple[int, _Plan | None, bool]], code_size: int) -> None:
    entries: list[tuple[int, int, str]] = []
    first = index[0][0] if index else code_size
    entries.append((base, first, "tj:trace_entry"))
    prefix = "tj:"
    for i, item in enumerate(code):
        if isinstance(item, Label):
            if item.name.startswith(("exit", "error")):
                prefix = "tj:stub:"
            continue
        off = index[i][0]
        end = next((index[j][0] for j in range(i + 1, len(index)) if index[j][1] is not None),
                   code_size)
        entries.append((base + off, end - off, prefix + item.op))
    perfmap.write(entries)


class RuntimeFunction:
    """A C-ABI runtime function stencil (``tj_*``), mapped once with its
    operands patched; never freed (it may be registered as a callback)."""

    __slots__ = ("address", "name", "size")

    def __init__(self, name: str, address: int, size: int) -> None:
        self.name = name
        self.address = address
        self.size = size


def load_function(name: str, operands: Sequence[int]) -> RuntimeFunction:
    """Map the runtime function stencil `name` with its operand holes set."""
    tables = _tables if _tables is not None else _load_tables()
    plan = tables.plans.get(name)
    if plan is None or not name.startswith("tj_"):
        raise AssemblyError(f"no runtime function {name!r}")
    if len(operands) != plan.arity:
        raise AssemblyError(f"{name} takes {plan.arity} operands, got {len(operands)}")
    if plan.jump_holes or plan.data or plan.offset_holes:
        raise AssemblyError(f"{name}: runtime functions have no jumps, offsets or data")
    code_pages = memory.round_up(len(plan.code))
    total = code_pages + memory.round_up(len(tables.got))
    base = memory.map_rw(total)
    buf = bytearray(plan.code)
    for o, k, a in plan.operand_holes:
        _pack_q(buf, o, (operands[k] + a) & _MASK64)
    for o, g, a in plan.got_holes:
        _pack_i(buf, o, code_pages + 8 * g + a - o)
    for o, is_data, a in plan.code_abs_holes:
        if is_data:
            raise AssemblyError(f"{name}: data hole without data")
        _pack_q(buf, o, (base + o + a) & _MASK64)
    ctypes.memmove(base, bytes(buf), len(buf))
    ctypes.memmove(base + code_pages, tables.got, len(tables.got))
    memory.protect(base, code_pages, memory.PROT_RX)
    memory.protect(base + code_pages, total - code_pages, memory.PROT_READ)
    perfmap.write([(base, len(plan.code), name)])
    return RuntimeFunction(name, base, total)


_RUNTIME: dict[str, RuntimeFunction] = {}


# Addresses the dispatcher makes for machine code (its tj_call_py, loaded
# with its state, and tj_state.impure); absent without a dispatcher.
_ADDRESSES: dict[str, int] = {}


def register_address(name: str, address: int) -> None:
    _ADDRESSES[name] = address


def registered_address(name: str) -> int | None:
    return _ADDRESSES.get(name)


def runtime_address(name: str) -> int:
    """Address of the runtime function `name` (no operands), mapped once per
    process and never unmapped: machine code calls it through an operand."""
    fn = _RUNTIME.get(name)
    if fn is None:
        fn = _RUNTIME[name] = load_function(name, ())
    return fn.address


def _label_pos(labels: dict[Label, int], label: Label | None, i: int, op: str, what: str) -> int:
    if label is None:
        raise AssemblyError(f"code[{i}]: {op} needs a label for {what}")
    pos = labels.get(label)
    if pos is None:
        raise AssemblyError(f"code[{i}]: {what} label {label!r} is not placed in the code")
    return pos


def stencil_exits(op: str) -> tuple[bool, bool]:
    """Whether the stencil of machine op `op` can take its guard exit and its
    error exit (so a code generator knows which labels it must supply)."""
    plan = _load_tables().plans.get(op)
    if plan is None:
        raise AssemblyError(f"unknown op {op!r}")
    return plan.uses[2], plan.uses[3]
