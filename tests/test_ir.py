"""The trace IR: text form round-trips, the verifier rejects malformed traces."""

from __future__ import annotations

import pytest

from tracejit.ir.ops import OPS, Type, markdown_table
from tracejit.ir.trace import Const, IRError, format_trace, parse_trace, verify

LOOP = """
trace loop f:14
  v0:obj = load_local slot=3
  guard_type v0 type=$range_iterator [pc=14 | | ]
  v1:obj = load_local slot=1
  guard_type v1 type=$int [pc=14 | | ]
  v2:int = unbox_int v1 [pc=14 | | ]
  label v5:int <- v2
  check_eval_breaker [pc=14 | | l1=v5]
  v7:int = range_next v0 [pc=14 | | l1=v5]
  v8:int = int_mul v7, 3i [pc=19 | v5 v7 $None^ | l1=v5 l2=v7]
  v9:int = int_add v5, v8 [pc=21 | v5 v8 | l1=v5 l2=v7]
  v10:float = int_to_float v9
  v11:bool = float_lt v10, 1.5f
  guard_true v11 [pc=30 | | l1=v9]
  v12:obj = getattr v0 name='start' [pc=31 | | l1=v9]
  decref v12
  jump v9
"""


def test_round_trip() -> None:
    trace = parse_trace(LOOP)
    verify(trace)
    text = format_trace(trace)
    again = format_trace(parse_trace(text))
    assert text == again
    assert "v8:int = int_mul v7, 3i [pc=19 | v5 v7 $None^ | l1=v5 l2=v7]" in text
    assert "label v5:int <- v2" in text


def test_snapshot_ownership_parsed() -> None:
    trace = parse_trace(LOOP)
    op = trace.ops[8]
    assert op.snapshot is not None
    assert [e.owned for e in op.snapshot.stack] == [True, True, False]
    const = op.snapshot.stack[2].ref
    assert isinstance(const, Const) and const.value is None


@pytest.mark.parametrize(
    "bad, message",
    [
        ("trace t\n  v1:int = int_add v0, 1i [pc=0 | | ]\n  jump", "before definition"),
        ("trace t\n  v0:obj = load_local slot=0\n  v1:int = int_add v0, 1i [pc=0 | | ]\n  jump",
         "wants int"),
        ("trace t\n  v0:obj = load_local slot=0\n  guard_type v0 type=$int\n  jump",
         "needs a snapshot"),
        ("trace t\n  v0:obj = load_local\n  jump", "missing attribute"),
        ("trace t\n  v0:obj = load_local slot=0\n  label v1:int <- v0\n  jump v0",
         "initial"),
        ("trace t\n  v0:obj = load_local slot=0", "ends with jump or exit"),
        ("trace t\n  label v0:int <- 1i\n  jump v0, v0", "passes 2 values"),
    ],
)
def test_verifier_rejects(bad: str, message: str) -> None:
    with pytest.raises(IRError, match=message):
        verify(parse_trace(bad))


def test_parser_rejects_unknown_op() -> None:
    with pytest.raises(IRError, match="unknown op"):
        parse_trace("trace t\n  frobnicate v0")


def test_op_table_is_consistent() -> None:
    for name, op in OPS.items():
        assert op.name == name
        assert op.doc, f"{name} needs a doc string"
        if op.result is Type.VOID:
            assert not op.pure or op.guard, name
    assert "| `int_add` | int | int, int |" in markdown_table()
