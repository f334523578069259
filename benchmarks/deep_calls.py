"""Deep-call object-oriented program: an expression-tree interpreter with a small
class hierarchy, virtual ``eval``/``visit`` methods, recursion and many small calls.

Prints one JSON line: {"result": ..., "times": [seconds per inner repeat, ...]}.
Options: --quick, --n N (evaluations), --repeats R (or env BENCH_QUICK=1).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: make the benchmarks package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import run_benchmark  # noqa: E402


class Node:
    def eval(self, env: Env) -> int:
        raise NotImplementedError

    def accept(self, visitor: Visitor) -> int:
        raise NotImplementedError


class Env:
    def __init__(self, x: int, parent: Env | None = None) -> None:
        self.x = x
        self.parent = parent

    def lookup(self) -> int:
        return self.x

    def child(self, x: int) -> Env:
        return Env(x, self)


class Const(Node):
    def __init__(self, value: int) -> None:
        self.value = value

    def eval(self, env: Env) -> int:
        return self.value

    def accept(self, visitor: Visitor) -> int:
        return visitor.visit_const(self)


class Var(Node):
    def eval(self, env: Env) -> int:
        return env.lookup()

    def accept(self, visitor: Visitor) -> int:
        return visitor.visit_var(self)


class BinOp(Node):
    def __init__(self, left: Node, right: Node) -> None:
        self.left = left
        self.right = right

    def eval(self, env: Env) -> int:
        return self.combine(self.left.eval(env), self.right.eval(env))

    def combine(self, a: int, b: int) -> int:
        raise NotImplementedError

    def accept(self, visitor: Visitor) -> int:
        return visitor.visit_binop(self)


class Add(BinOp):
    def combine(self, a: int, b: int) -> int:
        return (a + b) & 0xFFFF


class Mul(BinOp):
    def combine(self, a: int, b: int) -> int:
        return (a * b) & 0xFFFF


class Sub(BinOp):
    def combine(self, a: int, b: int) -> int:
        return (a - b) & 0xFFFF


class Let(Node):
    """Evaluate ``body`` with x rebound to ``value``'s result."""

    def __init__(self, value: Node, body: Node) -> None:
        self.value = value
        self.body = body

    def eval(self, env: Env) -> int:
        return self.body.eval(env.child(self.value.eval(env)))

    def accept(self, visitor: Visitor) -> int:
        return visitor.visit_let(self)


class Visitor:
    def visit_const(self, node: Const) -> int:
        return 1

    def visit_var(self, node: Var) -> int:
        return 1

    def visit_binop(self, node: BinOp) -> int:
        return 1 + node.left.accept(self) + node.right.accept(self)

    def visit_let(self, node: Let) -> int:
        return 1 + node.value.accept(self) + node.body.accept(self)


class DepthVisitor(Visitor):
    def visit_binop(self, node: BinOp) -> int:
        return 1 + max(node.left.accept(self), node.right.accept(self))

    def visit_let(self, node: Let) -> int:
        return 1 + max(node.value.accept(self), node.body.accept(self))


def build(depth: int, seed: int) -> Node:
    if depth == 0:
        return Var() if seed % 3 else Const(seed % 17 + 1)
    seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
    kind = seed % 4
    left = build(depth - 1, seed)
    right = build(depth - 1, seed >> 3)
    if kind == 0:
        return Add(left, right)
    if kind == 1:
        return Mul(left, right)
    if kind == 2:
        return Sub(left, right)
    return Let(left, right)


def deep_calls_kernel(n: int) -> int:
    trees = [build(7, s) for s in range(1, 9)]
    checksum = 0
    for tree in trees:
        checksum += tree.accept(Visitor()) * 3 + tree.accept(DepthVisitor())
    for i in range(n):
        tree = trees[i % len(trees)]
        checksum = (checksum * 7 + tree.eval(Env(i))) & 0xFFFFFFFF
    return checksum


def main(argv: list[str] | None = None) -> None:
    run_benchmark(deep_calls_kernel, argv, 8_000, 400)


if __name__ == "__main__":
    main()
