"""Trace optimizer: passes over the SSA trace IR, each tested text in / text out."""

from tracejit.opt.pipeline import optimize

__all__ = ["optimize"]
