"""Optimizer passes, tested as text in / text out."""

from __future__ import annotations

import textwrap

from tracejit.ir.trace import format_trace, parse_trace, verify
from tracejit.opt import optimize
from tracejit.opt.dce import dce
from tracejit.opt.fold import fold
from tracejit.opt.licm import hoist_invariant_loads
from tracejit.opt.refcount import remove_refcount_pairs
from tracejit.opt.strings import fuse_replace_chains


def run(pass_: object, src: str) -> str:
    trace = parse_trace(src)
    verify(trace)
    out = pass_(trace)  # type: ignore[operator]
    verify(out)
    return format_trace(out)


def expect(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def test_fold_removes_proven_type_guards() -> None:
    out = run(fold, """
    trace t
      v0:obj = load_local slot=0
      guard_type v0 type=$int [pc=0 | | ]
      guard_type v0 type=$int [pc=2 | | ]
      v1:int = int_add 2i, 3i [pc=2 | | ]
      v2:obj = box_int v1 [pc=4 | | ]
      guard_type v2 type=$int [pc=4 | | ]
      v3:int = unbox_int v2 [pc=4 | | ]
      v4:bool = int_lt v3, 10i
      guard_true v4 [pc=6 | | ]
      exit [pc=8 | v2 | ]
    """)
    assert out == expect("""
    trace t
      v0:obj = load_local slot=0
      guard_type v0 type=$int [pc=0 | | ]
      v2:obj = box_int 5i [pc=4 | | ]
      exit [pc=8 | v2 | ]
    """)


def test_fold_keeps_overflowing_and_dividing_guards() -> None:
    src = """
    trace t
      v0:int = int_add 9223372036854775807i, 1i [pc=0 | | ]
      v1:int = int_floordiv 1i, 0i [pc=0 | | ]
      v2:int = int_floordiv -7i, 2i [pc=0 | | ]
      v3:int = int_mod -7i, 2i [pc=0 | | ]
      v4:float = float_div 1.0f, 0.0f [pc=0 | | ]
      exit [pc=2 | v0 v1 v2 v3 v4 | ]
    """
    out = run(fold, src)
    assert "int_add 9223372036854775807i, 1i" in out
    assert "int_floordiv 1i, 0i" in out
    assert "float_div 1.0f, 0.0f" in out
    # Python's floor semantics: -7 // 2 == -4, -7 % 2 == 1
    assert "exit [pc=2 | v0 v1 -4i 1i v4 | ]" in out


def test_fold_nan_comparisons() -> None:
    out = run(fold, """
    trace t
      v0:bool = float_lt nanf, 1.0f
      v1:bool = float_ne nanf, nanf
      exit [pc=2 | v0 v1 | ]
    """)
    assert "exit [pc=2 | 0b 1b | ]" in out


def test_dce_removes_unused_pure_ops_and_loads() -> None:
    out = run(dce, """
    trace t
      v0:obj = load_local slot=0
      v1:obj = load_local slot=1
      v2:int = unbox_int v1 [pc=0 | | ]
      v3:int = int_and v2, 1i
      v4:obj = box_int v2 [pc=0 | | ]
      exit [pc=2 | | ]
    """)
    assert out == expect("""
    trace t
      v1:obj = load_local slot=1
      v2:int = unbox_int v1 [pc=0 | | ]
      exit [pc=2 | | ]
    """)


def test_licm_hoists_invariant_loads_guards_and_unboxing() -> None:
    out = run(hoist_invariant_loads, """
    trace t
      v0:obj = load_local slot=2
      guard_type v0 type=$int [pc=4 | | ]
      v1:int = unbox_int v0 [pc=4 | | ]
      label v2:int <- v1
      check_eval_breaker [pc=4 | | l2=v2]
      v3:obj = load_local slot=0
      guard_type v3 type=$int [pc=6 | | l2=v2]
      v4:int = unbox_int v3 [pc=6 | | l2=v2]
      v5:obj = load_local slot=1
      v6:int = int_add v2, v4 [pc=8 | | l2=v2]
      store_local v5 slot=1
      jump v6
    """)
    assert out == expect("""
    trace t
      v0:obj = load_local slot=2
      guard_type v0 type=$int [pc=4 | | ]
      v1:int = unbox_int v0 [pc=4 | | ]
      v3:obj = load_local slot=0
      guard_type v3 type=$int [pc=4! | | ]
      v4:int = unbox_int v3 [pc=4! | | ]
      label v2:int <- v1
      check_eval_breaker [pc=4 | | l2=v2]
      v5:obj = load_local slot=1
      v6:int = int_add v2, v4 [pc=8 | | l2=v2]
      store_local v5 slot=1
      jump v6
    """)


def test_pipeline_unbox_of_box() -> None:
    out = format_trace(optimize(parse_trace("""
    trace t
      v0:obj = load_local slot=0
      guard_type v0 type=$float [pc=0 | | ]
      v1:float = unbox_float v0
      label v2:float <- v1
      check_eval_breaker [pc=0 | | l0=v2]
      v3:float = float_mul v2, 2.0f
      v4:obj = box_float v3 [pc=2 | | l0=v2]
      v5:float = unbox_float v4
      v6:float = float_add v5, 1.0f
      jump v6
    """)))
    assert "= box_float" not in out
    assert "v6:float = float_add v3, 1.0f" in out


def test_licm_keeps_new_references_in_the_body() -> None:
    # tuple_getitem returns a new reference that the body releases each
    # iteration: hoisting it would release it once per iteration (the test_uuid
    # corruption found by tools/regrtest).
    src = """
    trace t
      v0:obj = load_local slot=0
      guard_type v0 type=$tuple [pc=4 | | ]
      label  <-
      check_eval_breaker [pc=4 | | ]
      v1:obj = tuple_getitem v0, 5i [pc=6 | | ]
      decref v1
      jump
    """
    out = run(hoist_invariant_loads, src)
    body = out.split("label")[1]
    assert "tuple_getitem" in body


def test_refcount_pairs_incref_decref_removed_snapshots_borrow() -> None:
    # `x[0] -= d` on a local list: COPY takes a reference that BINARY_SUBSCR's
    # list_getitem keeps alive only until the release right after it.
    out = run(remove_refcount_pairs, """
    trace t
      v0:obj = load_local slot=0
      incref v0
      guard_type v0 type=$list [pc=4 | v0^ 0i v0 0i | ]
      v1:obj = list_getitem v0, 0i [pc=4 | v0^ 0i v0 0i | ]
      decref v0
      exit [pc=8 | v0^ 0i v1 | ]
    """)
    assert out == expect("""
    trace t
      v0:obj = load_local slot=0
      guard_type v0 type=$list [pc=4 | v0^ 0i v0^ 0i | ]
      v1:obj = list_getitem v0, 0i [pc=4 | v0^ 0i v0^ 0i | ]
      exit [pc=8 | v0^ 0i v1 | ]
    """)


def test_refcount_pairs_borrowed_item_until_release() -> None:
    out = run(remove_refcount_pairs, """
    trace t
      v0:obj = load_local slot=0
      v1:obj = list_getitem v0, 1i [pc=4 | v0^ 1i | ]
      v5:obj = tuple_getitem v0, 2i [pc=5 | v1 | ]
      guard_type v1 type=$float [pc=6 | v1 | ]
      v2:float = unbox_float v1
      decref v1
      v3:float = float_add v2, 1.0f
      list_setitem_float v0, 1i, v3 [pc=8 | v0^ | ]
      exit [pc=10 | v5 | ]
    """)
    assert out == expect("""
    trace t
      v0:obj = load_local slot=0
      v1:obj = list_getitem_borrowed v0, 1i [pc=4 | v0^ 1i | ]
      v5:obj = tuple_getitem v0, 2i [pc=5 | v1^ | ]
      guard_type v1 type=$float [pc=6 | v1^ | ]
      v2:float = unbox_float v1
      v3:float = float_add v2, 1.0f
      list_setitem_float v0, 1i, v3 [pc=8 | v0^ | ]
      exit [pc=10 | v5 | ]
    """)


def test_refcount_pairs_kept_across_escapes_uses_and_unowned_snapshots() -> None:
    src = """
    trace t
      v0:obj = load_local slot=0
      incref v0
      v1:obj = getattr v0 name='a' [pc=2 | v0 | ]
      decref v0
      v2:obj = list_getitem v0, 0i [pc=4 | v0^ | ]
      store_local v1 slot=1
      decref v2
      v3:obj = list_getitem v0, 1i [pc=6 | v0^ | ]
      guard_type v0 type=$list [pc=8 | | ]
      decref v3
      v4:obj = list_getitem v0, 2i [pc=10 | v0^ | ]
      decref v4
      exit [pc=12 | v4^ | ]
    """
    # escaping ops between (getattr, store_local), a snapshot that does not own
    # the item (pc=8), a use after the release (the exit): all kept
    assert run(remove_refcount_pairs, src) == format_trace(parse_trace(src))


_REPLACE_ENV: dict[str, object] = {
    "replace": str.replace, "amp": "&", "eamp": "&amp;", "lt": "<", "elt": "&lt;",
    "gt": ">", "egt": "&gt;",
}


def test_replace_chain_fused() -> None:
    # html.escape's replaces after the refcount pass: each intermediate string
    # is seen only by the next replace and released once; the source's release
    # moves after the chain, whose exit is the first replace's.
    src = """
    trace t
      v0:obj = load_local slot=0
      v1:obj = call_nocode $replace, v0, $amp, $eamp [pc=4 | $replace v0 $amp $eamp | ]
      decref v0
      v2:obj = call_nocode $replace, v1, $lt, $elt [pc=8 | $replace v1 $lt $elt | ]
      decref v1
      v3:obj = call_nocode $replace, v2, $gt, $egt [pc=12 | $replace v2 $gt $egt | ]
      decref v2
      exit [pc=16 | v3 | ]
    """
    trace = parse_trace(src, _REPLACE_ENV)
    out = fuse_replace_chains(trace)
    verify(out)
    assert [op.name for op in out.ops] == ["load_local", "str_replace_chain", "decref", "exit"]
    chain = out.ops[1]
    assert chain.attrs["pairs"] == (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))
    assert chain.snapshot is not None and chain.snapshot.pc == 4
    assert chain.result is not None and chain.result.id == 3
    assert out.ops[2].args[0] == out.ops[0].result


def test_replace_chain_stops_at_a_seen_intermediate() -> None:
    # v1 is also written to the frame at the exit: it must exist, so the
    # chain stops before it is replaced (one replace is left alone).
    src = """
    trace t
      v0:obj = load_local slot=0
      v1:obj = call_nocode $replace, v0, $amp, $eamp [pc=4 | $replace v0 $amp $eamp | ]
      v2:obj = call_nocode $replace, v1, $lt, $elt [pc=8 | $replace v1 $lt $elt | ]
      exit [pc=16 | v1 v2 | ]
    """
    trace = parse_trace(src, _REPLACE_ENV)
    before = format_trace(trace)
    assert format_trace(fuse_replace_chains(trace)) == before
