"""The generated stencil table (golden checks) and the assembler's contract."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from backend_helpers import finish, requires_backend, run

from tracejit.backend import build
from tracejit.backend.stencil import (
    CODE_SYMBOL,
    DATA_SYMBOL,
    ENTRY,
    JUMP_SYMBOLS,
    KNOWN_KINDS,
    OFFSET_SYMBOLS,
    OPERAND_SYMBOLS,
    OPERANDS,
    load_stencils,
)

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "backend.md"
CMP = ("lt", "le", "eq", "ne", "gt", "ge")


def documented_ops() -> dict[str, int]:
    """op -> number of operands, from the machine-op table of docs/backend.md."""
    ops: dict[str, int] = {}
    text = DOC.read_text()
    table = text[text.index("## Machine ops") :]
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = re.findall(r"`([a-z_0-9]+)`", cells[0])
        if ".." in cells[0]:  # `float_lt` .. `float_ge`
            prefix = names[0].rsplit("_", 1)[0]
            names = [f"{prefix}_{c}" for c in CMP]
        operands = [o for o in re.split(r",\s*", cells[1]) if o]
        for name in names:
            ops[name] = len(operands)
    return ops


def test_docs_table_is_parsed() -> None:
    ops = documented_ops()
    assert len(ops) >= 60
    assert ops["int_add"] == 3 and ops["jump"] == 0 and ops["float_ge"] == 3


def test_every_documented_op_has_a_stencil_and_signature() -> None:
    stencils = load_stencils()
    ops = documented_ops()
    assert set(ops) == set(OPERANDS)
    assert {n for n in stencils if not n.startswith("tj_")} == set(OPERANDS) | {ENTRY}
    for name, count in ops.items():
        assert len(OPERANDS[name]) == count, name
        assert stencils[name].operands_used() <= count, name


LIBM = frozenset({"pow"})


def test_holes_are_of_known_kinds() -> None:
    for name, stencil in load_stencils().items():
        assert stencil.code, name
        for hole in stencil.holes:
            assert hole.kind in KNOWN_KINDS, (name, hole)
            limit = len(stencil.code) if hole.section == "code" else len(stencil.data)
            width = 8 if hole.kind == "R_X86_64_64" else 4
            assert 0 <= hole.offset <= limit - width, (name, hole)
            if hole.symbol in JUMP_SYMBOLS:
                assert hole.kind in ("R_X86_64_PLT32", "R_X86_64_PC32"), (name, hole)
            elif hole.symbol in OPERAND_SYMBOLS:
                assert hole.kind == "R_X86_64_64", (name, hole)
            elif hole.symbol in OFFSET_SYMBOLS:
                assert hole.kind in ("R_X86_64_32S", "R_X86_64_32"), (name, hole)
            elif hole.symbol.startswith("tjrt_"):
                # a runtime function of ops.c called through the GOT (out-of-line forms)
                assert "tj_" + hole.symbol[5:] in load_stencils(), (name, hole)
            elif hole.symbol not in (DATA_SYMBOL, CODE_SYMBOL):
                # the C-API, or libm for float ops (float_pow calls pow as CPython does)
                assert re.fullmatch(r"_?Py[A-Za-z0-9_]+", hole.symbol) or hole.symbol in LIBM, (
                    name, hole)


def test_stencil_shapes() -> None:
    stencils = load_stencils()
    # every op continues to the next op except the control-flow enders
    for name, stencil in stencils.items():
        continues = any(h.symbol == "_JIT_CONTINUE" for h in stencil.holes)
        runtime = name.startswith("tj_")
        enders = ("jump", "exit_finish", "exit_write")
        assert continues == (name not in enders and not runtime), name
    assert stencils["int_add"].trailing_continue or stencils["load_slot"].trailing_continue
    assert any(h.symbol == "_JIT_TARGET" for h in stencils["jump"].holes)
    assert not any(h.kind.startswith("R_X86_64_GOT") for h in stencils["int_add"].holes)
    # registers are addressed by 32-bit displacements, not movabs + index
    assert {h.symbol for h in stencils["float_add"].holes} >= set(OFFSET_SYMBOLS[:3])
    assert not any(h.symbol in OPERAND_SYMBOLS for h in stencils["float_add"].holes)
    assert any(h.symbol == "PyThreadState_Get" for h in stencils["tj_dispatch"].holes)


@requires_backend
def test_all_c_symbols_resolve() -> None:
    from tracejit.backend.assembler import warm_up

    warm_up()  # resolves every GOT and absolute C-API symbol; raises if one is missing


def test_rebuild_is_byte_identical() -> None:
    try:
        clang = build.find_clang()
    except build.BuildError as exc:
        pytest.skip(str(exc))
    if "ziglang" in clang or (shutil.which(clang[0]) is None and not Path(clang[0]).exists()):
        pytest.skip("the committed table is built with clang-19")
    if sys.version_info[:2] != (3, 13):
        pytest.skip("the build needs CPython 3.13 headers")
    assert build.build() == build.OUTPUT.read_text()


def test_build_reports_missing_clang(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEJIT_CLANG", "")
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(build.BuildError, match="no clang found"):
        build.find_clang()
    monkeypatch.setenv("TRACEJIT_CLANG", "/opt/my clang/bin/clang --foo")
    assert build.find_clang() == ["/opt/my", "clang/bin/clang", "--foo"]


# ---------------------------------------------------------------------------
# assembler contract

if True:  # keep the imports local to the backend-only tests below
    from tracejit.backend import AVAILABLE

    if AVAILABLE:
        from tracejit.backend.assembler import (
            MAX_REGS,
            AssemblyError,
            Label,
            MachineInstr,
            assemble,
        )


@requires_backend
@pytest.mark.parametrize(
    ("code", "message"),
    [
        (lambda L: [MachineInstr("no_such_op")], "unknown machine op"),
        (lambda L: [MachineInstr("trace_entry", (1,))], "unknown machine op"),
        (lambda L: [MachineInstr("const", (1,)), finish(0)], "takes 2 operands, got 1"),
        (lambda L: [MachineInstr("const", (1, 2, 3)), finish(0)], "takes 2 operands"),
        (lambda L: [MachineInstr("jump")], "needs a label for target"),
        (lambda L: [MachineInstr("jump", target=L)], "not placed"),
        (lambda L: [L, L, MachineInstr("jump", target=L)], "placed twice"),
        (lambda L: [MachineInstr("const", (1, 2))], "falls through past the end"),
        (lambda L: [MachineInstr("guard_true", (0,)), finish(0)], "label for exit"),
        (lambda L: [L], "no instruction"),
        (lambda L: [], "no instruction"),
    ],
)
def test_assembly_errors(code: object, message: str) -> None:
    label = Label("L")
    items: list[MachineInstr | Label] = code(label)  # type: ignore[operator]
    with pytest.raises(AssemblyError, match=message):
        assemble(items, 4)


@requires_backend
def test_nregs_range() -> None:
    end = [MachineInstr("exit_finish", (0, 0, 0))]
    for bad in (-1, MAX_REGS + 1):
        with pytest.raises(AssemblyError, match="nregs"):
            assemble(end, bad)
    assemble(end, MAX_REGS).free()


def _maps_for(address: int) -> list[str]:
    perms = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, perm = line.split()[:2]
        lo, hi = (int(x, 16) for x in span.split("-"))
        if lo <= address < hi:
            perms.append(perm)
    return perms


@requires_backend
def test_code_is_rx_data_is_r_and_free_unmaps() -> None:
    loop = Label("loop")
    code: list[MachineInstr | Label] = [
        MachineInstr("const", (0, 5)),
        loop,
        MachineInstr("jump", target=loop),
    ]
    compiled = assemble(code, 1)
    assert compiled.size % 4096 == 0 and compiled.code_size <= compiled.size
    assert _maps_for(compiled.address) == ["r-xp"]
    assert _maps_for(compiled.address + compiled.size - 1) == ["r--p"]
    assert compiled.label_offset(loop) == compiled.instr_offset(2)
    assert compiled.instr_offset(1) == compiled.label_offset(loop)
    with pytest.raises(AssemblyError):
        compiled.label_offset(Label("elsewhere"))
    compiled.free()
    compiled.free()  # idempotent
    assert _maps_for(compiled.address) == []
    with pytest.raises(RuntimeError, match="freed"):
        compiled.entry(sys._getframe())


@requires_backend
def test_trailing_jumps_are_dropped() -> None:
    stencils = load_stencils()
    ops = ["const", "copy", "int_add", "int_lt", "load_slot"]
    code = [MachineInstr(op, (0,) * len(OPERANDS[op]), exit=Label()) for op in ops]
    end = MachineInstr("exit_finish", (0, 0, 0))
    full = sum(len(stencils[op].code) for op in [ENTRY, *ops, "exit_finish"])
    dropped = sum(5 for op in ops if stencils[op].trailing_continue)
    assert dropped > 0
    labels = [c.exit for c in code if c.exit is not None]
    items: list[MachineInstr | Label] = [*code, end, *labels]
    compiled = assemble(items, 1)
    try:
        assert compiled.code_size == full - dropped
    finally:
        compiled.free()


@requires_backend
def test_negative_operands_are_twos_complement() -> None:
    def kernel() -> int:
        r: object = None
        code = [
            MachineInstr("const", (0, -5)),
            MachineInstr("const", (1, 3)),
            MachineInstr("int_mul", (2, 0, 1), exit=Label()),
            MachineInstr("box_int", (3, 2), error=Label()),
            MachineInstr("store_local", (3, 0)),
            finish(0),
        ]
        labels = [c.exit or c.error for c in code if c.exit or c.error]
        placed: list[MachineInstr | Label] = [*code]
        for label in labels:
            assert label is not None
            placed += [label, finish(1)]
        assert run(sys._getframe(), placed, nregs=4) == 0
        return r  # type: ignore[return-value]

    assert kernel() == -15
