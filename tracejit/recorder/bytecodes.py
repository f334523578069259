"""The one table that says how each bytecode is recorded and translated.

For each supported CPython 3.13 opcode: how many value-stack inputs the
recorder observes (their live objects, for types and identities) and the
``Translator`` method that turns the record into trace IR.  An opcode missing
here aborts recording with the reason ``unsupported opcode NAME``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tracejit._builtins import PRIVATE as _PRIVATE_BUILTINS

__builtins__ = _PRIVATE_BUILTINS  # type: ignore[assignment]  # see tracejit/_builtins.py


@dataclass(frozen=True, slots=True)
class BytecodeRule:
    # Stack items the instruction reads, as a function of its oparg.
    inputs: Callable[[int], int]
    # Name of the Translator method for it.
    handler: str


def _n(k: int) -> Callable[[int], int]:
    return lambda arg: k


BYTECODES: dict[str, BytecodeRule] = {
    "NOP": BytecodeRule(_n(0), "nop"),
    "EXTENDED_ARG": BytecodeRule(_n(0), "nop"),
    "NOT_TAKEN": BytecodeRule(_n(0), "nop"),
    "JUMP_FORWARD": BytecodeRule(_n(0), "nop"),
    "JUMP_BACKWARD": BytecodeRule(_n(0), "jump_backward"),
    "JUMP_BACKWARD_NO_INTERRUPT": BytecodeRule(_n(0), "jump_backward"),
    "LOAD_FAST": BytecodeRule(_n(0), "load_fast"),
    "LOAD_FAST_CHECK": BytecodeRule(_n(0), "load_fast_check"),
    "LOAD_FAST_LOAD_FAST": BytecodeRule(_n(0), "load_fast_load_fast"),
    "LOAD_FAST_AND_CLEAR": BytecodeRule(_n(0), "load_fast_and_clear"),
    "STORE_FAST": BytecodeRule(_n(1), "store_fast"),
    "STORE_FAST_LOAD_FAST": BytecodeRule(_n(1), "store_fast_load_fast"),
    "STORE_FAST_STORE_FAST": BytecodeRule(_n(2), "store_fast_store_fast"),
    "LOAD_CONST": BytecodeRule(_n(0), "load_const"),
    "LOAD_DEREF": BytecodeRule(_n(0), "load_deref"),
    "STORE_DEREF": BytecodeRule(_n(1), "store_deref"),
    "MAKE_FUNCTION": BytecodeRule(_n(1), "make_function"),
    "SET_FUNCTION_ATTRIBUTE": BytecodeRule(_n(2), "set_function_attribute"),
    "POP_TOP": BytecodeRule(_n(1), "pop_top"),
    "END_FOR": BytecodeRule(_n(1), "pop_top"),
    "PUSH_NULL": BytecodeRule(_n(0), "push_null"),
    "COPY": BytecodeRule(lambda arg: arg, "copy"),
    "SWAP": BytecodeRule(lambda arg: arg, "swap"),
    "BINARY_OP": BytecodeRule(_n(2), "binary_op"),
    "COMPARE_OP": BytecodeRule(_n(2), "compare_op"),
    "IS_OP": BytecodeRule(_n(2), "is_op"),
    "UNARY_NEGATIVE": BytecodeRule(_n(1), "unary_negative"),
    "UNARY_INVERT": BytecodeRule(_n(1), "unary_invert"),
    "UNARY_NOT": BytecodeRule(_n(1), "unary_not"),
    "TO_BOOL": BytecodeRule(_n(1), "to_bool"),
    "POP_JUMP_IF_TRUE": BytecodeRule(_n(1), "pop_jump_if"),
    "POP_JUMP_IF_FALSE": BytecodeRule(_n(1), "pop_jump_if"),
    "POP_JUMP_IF_NONE": BytecodeRule(_n(1), "pop_jump_if_none"),
    "POP_JUMP_IF_NOT_NONE": BytecodeRule(_n(1), "pop_jump_if_none"),
    "LOAD_GLOBAL": BytecodeRule(_n(0), "load_global"),
    "LOAD_ATTR": BytecodeRule(_n(1), "load_attr"),
    "STORE_ATTR": BytecodeRule(_n(2), "store_attr"),
    "BINARY_SUBSCR": BytecodeRule(_n(2), "binary_subscr"),
    "STORE_SUBSCR": BytecodeRule(_n(3), "store_subscr"),
    "CALL": BytecodeRule(lambda arg: arg + 2, "call"),
    "CALL_KW": BytecodeRule(lambda arg: arg + 3, "call_kw"),
    "FOR_ITER": BytecodeRule(_n(1), "for_iter"),
    "UNPACK_SEQUENCE": BytecodeRule(_n(1), "unpack_sequence"),
    "GET_ITER": BytecodeRule(_n(1), "get_iter"),
    "BUILD_LIST": BytecodeRule(lambda arg: arg, "build_list"),
    "BUILD_TUPLE": BytecodeRule(lambda arg: arg, "build_tuple"),
    "LIST_EXTEND": BytecodeRule(lambda arg: arg + 1, "list_extend"),
    "BINARY_SLICE": BytecodeRule(_n(3), "binary_slice"),
    "CONTAINS_OP": BytecodeRule(_n(2), "contains_op"),
    "BUILD_MAP": BytecodeRule(lambda arg: 2 * arg, "build_map"),
    "BUILD_CONST_KEY_MAP": BytecodeRule(lambda arg: arg + 1, "build_const_key_map"),
    # f-strings
    "FORMAT_SIMPLE": BytecodeRule(_n(1), "format_simple"),
    "FORMAT_WITH_SPEC": BytecodeRule(_n(2), "format_with_spec"),
    "CONVERT_VALUE": BytecodeRule(_n(1), "convert_value"),
    "BUILD_STRING": BytecodeRule(lambda arg: arg, "build_string"),
    # the list (oparg - 1 items below the appended one) and the item
    "LIST_APPEND": BytecodeRule(lambda arg: arg + 1, "list_append"),
    # Recorded only inside inlined calls (a trace ends before its own return).
    "RETURN_VALUE": BytecodeRule(_n(1), "return_value"),
    "RETURN_CONST": BytecodeRule(_n(0), "return_const"),
}
