"""SSA trace IR: values, ops with snapshots, traces; text form and verifier.

Text form (round-trips through ``format_trace`` / ``parse_trace``)::

    trace loop f:12
      v0:obj = load_local slot=3
      guard_type v0 type=$int [pc=12 | v1 v2^ | l3=v4]
      v5:int = int_add v1, 7i [pc=14 | | l3=v4]
      label v6:int
      jump v5

Operands are values ``vN`` or constants: ``7i`` (int64), ``1.5f`` (double),
``1b`` (bool), ``$name`` (an object from the trace's constant pool or a
builtin such as ``$int`` or ``$None``).  A snapshot ``[pc=P | stack | locals]``
says where the interpreter resumes when the op leaves the trace: bytecode
index P (code units), the value stack above the loop header's stack (``^``
marks a borrowed reference), and the frame locals the trace holds unwritten.
"""

from __future__ import annotations

import builtins
import re
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS
from tracejit.frozen import frozen
from tracejit.ir.ops import OPS, OpInfo, Type, info

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py


class Value:
    """An SSA value: defined once, by an op or a label."""

    __slots__ = ("id", "type")

    def __init__(self, id: int, type: Type) -> None:
        self.id = id
        self.type = type

    def __repr__(self) -> str:
        return f"v{self.id}"


@frozen
class Const:
    value: Any
    type: Type

    def __repr__(self) -> str:
        return f"Const({self.value!r}, {self.type.value})"


Ref = Value | Const


@frozen
class SnapEntry:
    ref: Ref
    owned: bool = True  # OBJ only: the trace holds a reference to hand to the frame


@dataclass(slots=True)
class FrameSnap:
    """An inlined callee's frame at an exit.  Text:
    ``func=F code=C pc=P argc=N | stack | locals`` (all its locals, slots of
    its own code; a missing slot is unbound)."""

    func: Ref
    code: Any  # types.CodeType
    pc: int  # code units: its CALL (outer frames) or where it resumes (innermost)
    argc: int  # the oparg of the CALL in the frame below that made this call
    stack: list[SnapEntry] = field(default_factory=list)
    locals: dict[int, SnapEntry] = field(default_factory=dict)

    def refs(self) -> list[Ref]:
        return [self.func] + [e.ref for e in self.stack] + [e.ref for e in self.locals.values()]

    def copy(self) -> FrameSnap:
        return FrameSnap(self.func, self.code, self.pc, self.argc, list(self.stack),
                         dict(self.locals))


@dataclass(slots=True)
class Snapshot:
    pc: int
    stack: list[SnapEntry] = field(default_factory=list)
    locals: dict[int, SnapEntry] = field(default_factory=dict)
    # An entry check (preamble guard, eval-breaker poll): leaving there means
    # the trace does not apply now, so no bridge grows from it.  Text: `pc=P!`.
    entry: bool = False
    # Inlined callees the exit is inside, outermost first.  Then `pc` is the
    # trace's own CALL into frames[0] and `stack` its value stack below that
    # CALL's inputs (see tracejit/runtime/resume.py).  Text: `|| frame` each.
    frames: list[FrameSnap] = field(default_factory=list)

    def refs(self) -> list[Ref]:
        out = [e.ref for e in self.stack] + [e.ref for e in self.locals.values()]
        for f in self.frames:
            out.extend(f.refs())
        return out

    def copy(self) -> Snapshot:
        return Snapshot(self.pc, list(self.stack), dict(self.locals), self.entry,
                        [f.copy() for f in self.frames])

    def map_refs(self, sub: Callable[[Ref], Ref], done: set[int] | None = None) -> None:
        """Replace every value the snapshot refers to by sub(value).  `done`:
        ids of inlined frames (shared between snapshots) already mapped."""
        self.stack = [SnapEntry(sub(e.ref), e.owned) for e in self.stack]
        self.locals = {k: SnapEntry(sub(e.ref), e.owned) for k, e in self.locals.items()}
        for f in self.frames:
            if done is not None:
                if id(f) in done:
                    continue
                done.add(id(f))
            f.func = sub(f.func)
            f.stack = [SnapEntry(sub(e.ref), e.owned) for e in f.stack]
            f.locals = {k: SnapEntry(sub(e.ref), e.owned) for k, e in f.locals.items()}


@dataclass(slots=True)
class Op:
    name: str
    args: list[Ref]
    attrs: dict[str, Any] = field(default_factory=dict)
    result: Value | None = None
    snapshot: Snapshot | None = None
    # Label ops define their parameters here instead of `result`.
    params: list[Value] = field(default_factory=list)

    @property
    def info(self) -> OpInfo:
        return info(self.name)


@dataclass(slots=True)
class Trace:
    name: str
    ops: list[Op] = field(default_factory=list)
    # Objects the trace refers to by ``$cN``; kept alive while the trace lives.
    consts: list[object] = field(default_factory=list)
    next_id: int = 0
    # Calls the translator inlined (not part of the text form).
    inlined_calls: int = 0
    # The code objects of those calls (tools watching one of them alone must
    # see its events: the trace steps aside, see check_instrumentation).
    inlined_codes: list[types.CodeType] = field(default_factory=list)
    # A function trace that, run to its return, runs no Python code and
    # changes no dict: a caller's checks survive calling it (guard_pure_call).
    pure: bool = False

    def new_value(self, type: Type) -> Value:
        v = Value(self.next_id, type)
        self.next_id += 1
        return v

    def const_name(self, obj: object) -> str:
        for i, c in enumerate(self.consts):
            if c is obj:
                return f"c{i}"
        self.consts.append(obj)
        return f"c{len(self.consts) - 1}"


def entry_types(trace: Trace) -> tuple[tuple[int, type], ...]:
    """The types a trace's entry guards want in the frame's slots (locals,
    then the value stack), as (slot, type) pairs."""
    slot_of: dict[int, int] = {}
    out: list[tuple[int, type]] = []
    for op in trace.ops:
        if op.name == "label" or (op.snapshot is not None and not op.snapshot.entry):
            break  # the preamble is over
        if op.name == "load_local" and op.result is not None:
            slot_of[op.result.id] = op.attrs["slot"]
        elif op.name == "guard_type":
            arg = op.args[0]
            if isinstance(arg, Value) and arg.id in slot_of:
                out.append((slot_of[arg.id], op.attrs["type"]))
    return tuple(out)


class IRError(Exception):
    pass


# ---------------------------------------------------------------- printing

_BUILTIN_NAMES: dict[int, str] = {}


def _builtin_names() -> dict[int, str]:
    if not _BUILTIN_NAMES:
        for name in dir(builtins):
            obj = getattr(builtins, name)
            if isinstance(obj, type) or obj is None or obj is True or obj is False:
                _BUILTIN_NAMES.setdefault(id(obj), name)
        _BUILTIN_NAMES[id(type(iter(range(0))))] = "range_iterator"
        _BUILTIN_NAMES[id(type(iter([])))] = "list_iterator"
        _BUILTIN_NAMES[id(type(iter(())))] = "tuple_iterator"
    return _BUILTIN_NAMES


def _fmt_obj(trace: Trace, obj: object) -> str:
    name = _builtin_names().get(id(obj))
    if name is not None:
        return f"${name}"
    return f"${trace.const_name(obj)}"


def _fmt_ref(trace: Trace, ref: Ref) -> str:
    if isinstance(ref, Value):
        return f"v{ref.id}"
    if ref.type is Type.INT:
        return f"{ref.value}i"
    if ref.type is Type.FLOAT:
        return f"{float(ref.value)!r}f"
    if ref.type is Type.BOOL:
        return f"{int(bool(ref.value))}b"
    return _fmt_obj(trace, ref.value)


def _fmt_attr(trace: Trace, value: object) -> str:
    if isinstance(value, bool) or value is None:
        return _fmt_obj(trace, value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return repr(value)
    return _fmt_obj(trace, value)


def _fmt_entries(trace: Trace, stack: list[SnapEntry], locals: dict[int, SnapEntry]) -> str:
    st = " ".join(_fmt_ref(trace, e.ref) + ("" if e.owned else "^") for e in stack)
    locs = " ".join(
        f"l{slot}=" + _fmt_ref(trace, e.ref) + ("" if e.owned else "^")
        for slot, e in sorted(locals.items())
    )
    return f"| {st} | {locs}"


def _fmt_snapshot(trace: Trace, snap: Snapshot) -> str:
    mark = "!" if snap.entry else ""
    text = f"[pc={snap.pc}{mark} " + _fmt_entries(trace, snap.stack, snap.locals)
    for f in snap.frames:
        text += (f" || func={_fmt_ref(trace, f.func)} code={_fmt_obj(trace, f.code)} "
                 f"pc={f.pc} argc={f.argc} " + _fmt_entries(trace, f.stack, f.locals))
    return (text + "]").replace("  ", " ").replace("  ", " ")


def format_op(trace: Trace, op: Op) -> str:
    parts = []
    if op.name == "label":
        params = " ".join(f"v{p.id}:{p.type.value}" for p in op.params)
        inits = " ".join(_fmt_ref(trace, a) for a in op.args)
        return f"label {params} <- {inits}".rstrip()
    head = f"v{op.result.id}:{op.result.type.value} = " if op.result is not None else ""
    parts.append(head + op.name)
    body = ", ".join(_fmt_ref(trace, a) for a in op.args)
    attrs = " ".join(f"{k}={_fmt_attr(trace, v)}" for k, v in op.attrs.items())
    text = parts[0]
    if body:
        text += " " + body
    if attrs:
        text += " " + attrs
    if op.snapshot is not None:
        text += " " + _fmt_snapshot(trace, op.snapshot)
    return text


def format_trace(trace: Trace) -> str:
    lines = [f"trace {trace.name}"]
    lines.extend("  " + format_op(trace, op) for op in trace.ops)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- parsing

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<snap>\[[^\]]*\])
      | (?P<attr>[a-z_]+=(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s,]+))
      | (?P<ref>[^\s,]+)
    )\s*,?""",
    re.VERBOSE,
)


class _Parser:
    def __init__(self, trace: Trace, env: dict[str, object]) -> None:
        self.trace = trace
        self.env = env
        self.values: dict[int, Value] = {}

    def obj(self, name: str) -> object:
        if name in self.env:
            return self.env[name]
        m = re.fullmatch(r"c(\d+)", name)
        if m and int(m.group(1)) < len(self.trace.consts):
            return self.trace.consts[int(m.group(1))]
        if name == "range_iterator":
            return type(iter(range(0)))
        if name == "list_iterator":
            return type(iter([]))
        if name == "tuple_iterator":
            return type(iter(()))
        if hasattr(builtins, name):
            return getattr(builtins, name)
        raise IRError(f"unknown object ${name}")

    def define(self, token: str) -> Value:
        m = re.fullmatch(r"v(\d+):(\w+)", token)
        if not m:
            raise IRError(f"bad definition {token!r}")
        vid = int(m.group(1))
        if vid in self.values:
            raise IRError(f"v{vid} defined twice")
        v = Value(vid, Type(m.group(2)))
        self.values[vid] = v
        self.trace.next_id = max(self.trace.next_id, vid + 1)
        return v

    def ref(self, token: str) -> Ref:
        if re.fullmatch(r"v\d+", token):
            vid = int(token[1:])
            if vid not in self.values:
                raise IRError(f"{token} used before definition")
            return self.values[vid]
        if token.startswith("$"):
            return Const(self.obj(token[1:]), Type.OBJ)
        if token.endswith("i"):
            return Const(int(token[:-1]), Type.INT)
        if token.endswith("f"):
            return Const(float(token[:-1]), Type.FLOAT)
        if token.endswith("b"):
            return Const(bool(int(token[:-1])), Type.BOOL)
        raise IRError(f"bad operand {token!r}")

    def attr(self, raw: str) -> object:
        if raw.startswith("$"):
            return self.obj(raw[1:])
        if raw[0] in "'\"":
            import ast

            return ast.literal_eval(raw)
        return int(raw)

    def entry(self, token: str) -> SnapEntry:
        owned = not token.endswith("^")
        return SnapEntry(self.ref(token.rstrip("^")), owned)

    def snapshot(self, text: str) -> Snapshot:
        parts = text[1:-1].split("||")
        fields = [f.strip() for f in parts[0].split("|")]
        if len(fields) != 3 or not fields[0].startswith("pc="):
            raise IRError(f"bad snapshot {text!r}")
        pc = fields[0][3:]
        snap = Snapshot(int(pc.rstrip("!")), entry=pc.endswith("!"))
        snap.stack = [self.entry(t) for t in fields[1].split()]
        for item in fields[2].split():
            slot, _, tok = item.partition("=")
            snap.locals[int(slot[1:])] = self.entry(tok)
        for part in parts[1:]:
            ff = [f.strip() for f in part.split("|")]
            head = dict(t.partition("=")[::2] for t in ff[0].split())
            if len(ff) != 3 or set(head) != {"func", "code", "pc", "argc"}:
                raise IRError(f"bad inlined frame in snapshot {text!r}")
            code = self.ref(head["code"])
            if not isinstance(code, Const):
                raise IRError(f"bad code object in snapshot {text!r}")
            frame = FrameSnap(self.ref(head["func"]), code.value, int(head["pc"]),
                              int(head["argc"]))
            frame.stack = [self.entry(t) for t in ff[1].split()]
            for item in ff[2].split():
                slot, _, tok = item.partition("=")
                frame.locals[int(slot[1:])] = self.entry(tok)
            snap.frames.append(frame)
        return snap

    def line(self, text: str) -> Op:
        result: Value | None = None
        if "=" in text.split()[0] or re.match(r"v\d+:\w+\s*=", text):
            lhs, _, text = text.partition("=")
            result = self.define(lhs.strip())
            text = text.strip()
        name, _, rest = text.partition(" ")
        if name not in OPS:
            raise IRError(f"unknown op {name!r}")
        op = Op(name, [], result=result)
        if name == "label":
            params, _, inits = rest.partition("<-")
            op.args = [self.ref(tok) for tok in inits.split()]
            for tok in params.split():
                op.params.append(self.define(tok))
            return op
        for m in _TOKEN.finditer(rest):
            if m.group("snap"):
                op.snapshot = self.snapshot(m.group("snap"))
            elif m.group("attr"):
                key, _, raw = m.group("attr").partition("=")
                op.attrs[key] = self.attr(raw)
            elif m.group("ref"):
                op.args.append(self.ref(m.group("ref")))
        return op


def parse_trace(text: str, env: dict[str, object] | None = None,
                consts: list[object] | None = None) -> Trace:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("trace"):
        raise IRError("a trace starts with 'trace NAME'")
    trace = Trace(lines[0][len("trace"):].strip(), consts=list(consts or []))
    parser = _Parser(trace, env or {})
    for ln in lines[1:]:
        if ln.startswith("#"):
            continue
        trace.ops.append(parser.line(ln))
    return trace


# ---------------------------------------------------------------- verifier

def _ref_type(ref: Ref) -> Type:
    return ref.type


class _Where:
    """An op's place for an error message (formatted only when one is raised)."""

    __slots__ = ("index", "name", "part")

    def __init__(self, index: int, name: str, part: str = "") -> None:
        self.index, self.name, self.part = index, name, part

    def __str__(self) -> str:
        return f"op {self.index} ({self.name}){self.part}"


def verify(trace: Trace) -> None:
    """Check SSA form, operand types, attributes, snapshots and loop shape."""
    defined: set[int] = set()
    label: Op | None = None
    # Snapshots and inlined frames are shared between ops: what held at one
    # op still holds later (defined only grows).
    checked: set[int] = set()

    def use(ref: Ref, where: object) -> None:
        if isinstance(ref, Value) and ref.id not in defined:
            raise IRError(f"{where}: v{ref.id} used before definition")

    def snapshot_uses(snap: Snapshot, where: _Where) -> None:
        checked.add(id(snap))
        for e in snap.stack:
            use(e.ref, where)
        for e in snap.locals.values():
            use(e.ref, where)
        for f in snap.frames:
            if id(f) not in checked:
                checked.add(id(f))
                for r in f.refs():
                    use(r, where)

    for index, op in enumerate(trace.ops):
        where = _Where(index, op.name)
        spec = info(op.name)
        if op.name in ("jump", "exit") and index != len(trace.ops) - 1:
            raise IRError(f"{where}: {op.name} must be the last op")
        for a in op.args:
            use(a, where)
        if not spec.varargs and len(op.args) != len(spec.operands):
            raise IRError(f"{where}: takes {len(spec.operands)} operands, got {len(op.args)}")
        if spec.varargs and len(op.args) < len(spec.operands):
            raise IRError(f"{where}: takes at least {len(spec.operands)} operands")
        for a, t in zip(op.args, spec.operands, strict=False):
            if _ref_type(a) is not t:
                raise IRError(f"{where}: operand {a!r} is {_ref_type(a).value}, wants {t.value}")
        if spec.varargs and op.name in ("call", "call_kw", "call_nocode"):
            for a in op.args:
                if _ref_type(a) is not Type.OBJ:
                    raise IRError(f"{where}: call operands must be obj")
        for attr in spec.attrs:
            if attr not in op.attrs:
                raise IRError(f"{where}: missing attribute {attr}")
        for attr in op.attrs:
            if attr not in spec.attrs:
                raise IRError(f"{where}: unexpected attribute {attr}")
        if spec.needs_snapshot and op.snapshot is None:
            raise IRError(f"{where}: needs a snapshot")
        if op.snapshot is not None and id(op.snapshot) not in checked:
            snapshot_uses(op.snapshot, _Where(index, op.name, " snapshot"))
        if spec.result is Type.VOID:
            if op.result is not None:
                raise IRError(f"{where}: has no result")
        else:
            if op.result is None:
                raise IRError(f"{where}: result missing")
            if op.result.type is not spec.result:
                raise IRError(f"{where}: result is {spec.result.value}")
            if op.result.id in defined:
                raise IRError(f"{where}: v{op.result.id} defined twice")
            defined.add(op.result.id)
        if op.name == "label":
            if label is not None:
                raise IRError(f"{where}: second label")
            label = op
            if len(op.args) != len(op.params):
                raise IRError(f"{where}: label needs one initial value per parameter")
            for a, p in zip(op.args, op.params, strict=True):
                if _ref_type(a) is not p.type:
                    raise IRError(f"{where}: initial {a!r} for v{p.id}:{p.type.value}")
            for p in op.params:
                if p.id in defined:
                    raise IRError(f"{where}: v{p.id} defined twice")
                defined.add(p.id)
        if op.name == "jump":
            if label is None:
                raise IRError(f"{where}: jump without label")
            if len(op.args) != len(label.params):
                raise IRError(f"{where}: jump passes {len(op.args)} values, label takes "
                              f"{len(label.params)}")
            for a, p in zip(op.args, label.params, strict=True):
                if _ref_type(a) is not p.type:
                    raise IRError(f"{where}: jump passes {a!r} for v{p.id}:{p.type.value}")
    if trace.ops and trace.ops[-1].name not in ("jump", "exit"):
        raise IRError("a trace ends with jump or exit")
