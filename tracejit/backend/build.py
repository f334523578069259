"""Build the stencil table from the C stencils (build time only).

    python -m tracejit.backend.build          # (re)write the committed table
    python -m tracejit.backend.build --check  # rebuild in memory, exit 1 if it differs

Compiles ``stencils/ops.c`` once with clang (``-ffunction-sections``), reads
the ELF object with pyelftools and writes one stencil per function (``op_X``
becomes op ``"X"``; ``trace_entry`` stays ``"trace_entry"``) to
``_generated/x86_64_linux_cp313.py`` as plain literals. The output is
deterministic: stencils, holes and symbols are sorted and no path, time or
compiler version is written.

Clang is looked up as ``$TRACEJIT_CLANG`` (a command, split with shlex),
``clang-19`` on PATH, then the ``ziglang`` wheel
(``python -m ziglang cc -target x86_64-linux-gnu``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracejit.backend.stencil import (
    CODE_SYMBOL,
    DATA_SYMBOL,
    ENTRY,
    KNOWN_KINDS,
    TABLE_MODULE,
    Hole,
    Section,
    Stencil,
)

HERE = Path(__file__).resolve().parent
STENCIL_DIR = HERE / "stencils"
SOURCE = STENCIL_DIR / "ops.c"
OUTPUT = HERE / "_generated" / f"{TABLE_MODULE}.py"
TARGET = "x86_64-unknown-linux-gnu"
OP_PREFIX = "op_"
# C-ABI functions of the runtime (the dispatcher), loaded once per process.
RUNTIME_PREFIX = "tj_"
DATA_ALIGN = 16

# The flags of CPython's Tools/jit for x86-64 Linux, plus -ffunction-sections
# (one section per stencil) and -DNDEBUG (release-build inline helpers).
CFLAGS: tuple[str, ...] = (
    "-DPy_BUILD_CORE",
    "-DNDEBUG",
    "-O3",
    "-c",
    "-std=c11",
    "-fno-pic",
    "-mcmodel=medium",
    "-mlarge-data-threshold=0",
    "-fno-plt",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-fno-builtin",
    "-fno-stack-protector",
    "-fno-jump-tables",
    "-ffunction-sections",
    "-fdata-sections",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Werror",
)


class BuildError(Exception):
    pass


def find_clang() -> list[str]:
    """The clang command: $TRACEJIT_CLANG, clang-19, or the ziglang wheel."""
    env = os.environ.get("TRACEJIT_CLANG", "").strip()
    if env:
        return shlex.split(env)
    clang19 = shutil.which("clang-19")
    if clang19 is not None:
        return [clang19]
    if importlib.util.find_spec("ziglang") is not None:
        return [sys.executable, "-m", "ziglang", "cc", "-target", "x86_64-linux-gnu"]
    raise BuildError(
        "no clang found: set TRACEJIT_CLANG to a clang (>= 19) command, install "
        "clang-19 (apt-get install clang-19) or `pip install ziglang`"
    )


def include_dirs() -> list[str]:
    include = sysconfig.get_config_var("INCLUDEPY")
    if not isinstance(include, str) or not Path(include, "internal", "pycore_frame.h").exists():
        raise BuildError(
            "CPython's internal headers were not found (need Include/internal of CPython 3.13)"
        )
    if sys.version_info[:2] != (3, 13):
        raise BuildError("run the build with CPython 3.13 (its headers define the stencils' ABI)")
    return [f"-I{include}", f"-I{Path(include, 'internal')}", f"-I{STENCIL_DIR}"]


def compile_object(clang: list[str], out: Path) -> None:
    cmd = [*clang, f"--target={TARGET}", *include_dirs(), *CFLAGS, "-o", str(out), str(SOURCE)]
    if "ziglang" in cmd:
        cmd.remove(f"--target={TARGET}")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"clang failed ({shlex.join(cmd)}):\n{proc.stderr}")


@dataclass
class _DataLayout:
    data: bytearray
    offsets: dict[int, int]  # section index -> offset in the stencil's data


def _reloc_type_names() -> dict[int, str]:
    from elftools.elf.enums import ENUM_RELOC_TYPE_x64

    names = {int(v): str(k) for k, v in ENUM_RELOC_TYPE_x64.items() if k != "_default_"}
    # Newer than some pyelftools tables (x86-64 psABI 1.0):
    names.setdefault(41, "R_X86_64_GOTPCRELX")
    names.setdefault(42, "R_X86_64_REX_GOTPCRELX")
    return names


def read_stencils(obj: Path) -> dict[str, Stencil]:
    """Cut one stencil out of each function section of the object."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    types = _reloc_type_names()
    stencils: dict[str, Stencil] = {}
    with obj.open("rb") as f:
        elf = ELFFile(f)
        if elf["e_machine"] != "EM_X86_64":
            raise BuildError(f"not an x86-64 object: {elf['e_machine']}")
        symtab = elf.get_section_by_name(".symtab")
        if not isinstance(symtab, SymbolTableSection):
            raise BuildError("the object has no symbol table")
        functions: dict[int, str] = {}
        for sym in symtab.iter_symbols():
            if sym["st_info"]["type"] == "STT_FUNC" and isinstance(sym["st_shndx"], int):
                if int(sym["st_value"]) != 0:
                    raise BuildError(f"{sym.name} does not start its section")
                functions[int(sym["st_shndx"])] = str(sym.name)
        for index, fname in sorted(functions.items(), key=lambda kv: kv[1]):
            if fname == ENTRY:
                name = ENTRY
            elif fname.startswith(OP_PREFIX):
                name = fname[len(OP_PREFIX) :]
            elif fname.startswith(RUNTIME_PREFIX):
                name = fname
            else:
                raise BuildError(
                    f"unexpected function {fname} (stencils are op_*, tj_* or {ENTRY})")
            stencils[name] = _read_one(elf, symtab, types, index, name)
    return dict(sorted(stencils.items()))


def _relocations(elf: Any, index: int) -> list[Any]:
    from elftools.elf.relocation import RelocationSection

    out: list[Any] = []
    for sec in elf.iter_sections():
        if isinstance(sec, RelocationSection) and int(sec["sh_info"]) == index:
            if not sec.is_RELA():
                raise BuildError("expected RELA relocations")
            out.extend(sec.iter_relocations())
    return out


def _read_one(elf: Any, symtab: Any, types: dict[int, str], index: int, name: str) -> Stencil:
    code_section = elf.get_section(index)
    code = bytes(code_section.data())
    layout = _DataLayout(bytearray(), {})
    holes: list[Hole] = []
    pending: list[tuple[Section, int]] = [("code", index)]
    done: set[int] = set()
    while pending:
        section, sindex = pending.pop()
        if sindex in done:
            continue
        done.add(sindex)
        base = 0 if section == "code" else layout.offsets[sindex]
        for rel in _relocations(elf, sindex):
            kind = types.get(int(rel["r_info_type"]), str(rel["r_info_type"]))
            if kind not in KNOWN_KINDS:
                raise BuildError(f"{name}: relocation kind {kind} is not supported")
            sym = symtab.get_symbol(int(rel["r_info_sym"]))
            offset = base + int(rel["r_offset"])
            addend = int(rel["r_addend"])
            shndx = sym["st_shndx"]
            if shndx == "SHN_UNDEF":
                holes.append(Hole(section, kind, offset, str(sym.name), addend))
                continue
            if not isinstance(shndx, int):
                raise BuildError(f"{name}: symbol {sym.name} in section {shndx}")
            if shndx == index:
                value = addend + int(sym["st_value"])
                holes.append(Hole(section, kind, offset, CODE_SYMBOL, value))
                continue
            target = elf.get_section(shndx)
            flags = int(target["sh_flags"])
            if flags & 0x4:  # SHF_EXECINSTR: another function
                raise BuildError(f"{name}: refers to code outside its own function ({sym.name})")
            if shndx not in layout.offsets:
                align = max(1, int(target["sh_addralign"]))
                if align > DATA_ALIGN:
                    raise BuildError(f"{name}: data alignment {align} > {DATA_ALIGN}")
                pad = -len(layout.data) % align
                layout.data.extend(b"\0" * pad)
                layout.offsets[shndx] = len(layout.data)
                if target["sh_type"] == "SHT_NOBITS":
                    layout.data.extend(b"\0" * int(target["sh_size"]))
                else:
                    layout.data.extend(bytes(target.data()))
                pending.append(("data", shndx))
            value = layout.offsets[shndx] + int(sym["st_value"]) + addend
            holes.append(Hole(section, kind, offset, DATA_SYMBOL, value))
    holes.sort(key=lambda h: (h.section, h.offset, h.symbol, h.kind, h.addend))
    return Stencil(name=name, code=code, data=bytes(layout.data), holes=tuple(holes))


def _hex_lines(data: bytes, indent: str) -> str:
    if not data:
        return 'b""'
    chunks = [data[i : i + 32].hex() for i in range(0, len(data), 32)]
    body = "".join(f'{indent}    "{c}"\n' for c in chunks)
    return f"bytes.fromhex(\n{body}{indent})"


def render(stencils: dict[str, Stencil]) -> str:
    """The generated module's text (deterministic)."""
    out = [
        "# Generated by `python -m tracejit.backend.build` from",
        "# tracejit/backend/stencils/ops.c; do not edit. Check with --check.",
        f"# Target: {TARGET}, CPython 3.13 (-DPy_BUILD_CORE).",
        "# STENCILS: name -> (code, data, holes); hole: (section, kind, offset, symbol, addend).",
        "",
        "STENCILS: dict[str, tuple[bytes, bytes, tuple[tuple[str, str, int, str, int], ...]]] = {",
    ]
    for name in sorted(stencils):
        s = stencils[name]
        out.append(f"    {name!r}: (")
        out.append(f"        {_hex_lines(s.code, '        ')},")
        out.append(f"        {_hex_lines(s.data, '        ')},")
        out.append("        (")
        for h in s.holes:
            fields = f"{h.section!r}, {h.kind!r}, {h.offset}, {h.symbol!r}, {h.addend}"
            out.append(f"            ({fields}),")
        out.append("        ),")
        out.append("    ),")
    out.append("}")
    return "\n".join(out) + "\n"


def build() -> str:
    clang = find_clang()
    with tempfile.TemporaryDirectory(prefix="tracejit-stencils-") as tmp:
        obj = Path(tmp, "ops.o")
        compile_object(clang, obj)
        stencils = read_stencils(obj)
    return render(stencils)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracejit.backend.build", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the committed table is out of date"
    )
    args = parser.parse_args(argv)
    try:
        text = build()
    except BuildError as exc:
        print(f"tracejit.backend.build: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(
                f"tracejit.backend.build: {OUTPUT.relative_to(HERE.parent.parent)} is out of date; "
                "run `python -m tracejit.backend.build`",
                file=sys.stderr,
            )
            return 1
        print("stencil table is up to date")
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(HERE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
