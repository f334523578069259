"""tracejit: a tracing JIT compiler for stock CPython 3.13 on x86-64 Linux.

Public API: ``enable``, ``disable``, ``stats``, ``available``,
``unavailable_reason``, ``params``.  On any other Python or platform the
package imports, ``available()`` is False and ``enable()`` warns and returns
False: the program runs on the plain interpreter.
"""

from __future__ import annotations

import platform
import sys
import warnings
from typing import Any

from tracejit.params import Params
from tracejit.stats import STATS

__all__ = ["available", "disable", "enable", "params", "stats", "unavailable_reason"]

params = Params()


def unavailable_reason() -> str:
    """Why the JIT cannot run here, or '' when it can."""
    if sys.implementation.name != "cpython":
        return f"tracejit needs CPython, this is {sys.implementation.name}"
    if sys.version_info[:2] != (3, 13):
        return f"tracejit needs CPython 3.13, this is {platform.python_version()}"
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"tracejit supports x86-64 Linux only, this is {sys.platform}/{platform.machine()}"
    if getattr(sys, "_is_gil_enabled", lambda: True)() is False:
        return "tracejit does not support the free-threaded build"
    from tracejit.backend import UNAVAILABLE_REASON

    return UNAVAILABLE_REASON


def available() -> bool:
    return unavailable_reason() == ""


def enable(**changes: Any) -> bool:
    """Turn the JIT on (parameters as keywords). Returns False, with a warning,
    when the JIT cannot run here; the program keeps running on the interpreter."""
    params.update(**changes)
    reason = unavailable_reason()
    if reason:
        warnings.warn(f"tracejit: JIT unavailable, running without it: {reason}", stacklevel=2)
        return False
    import tracejit.runtime.hooks as hooks

    hooks.install(params)
    return True


def disable() -> None:
    """Turn the JIT off: native code is no longer entered; the program continues."""
    if not available():
        return
    import tracejit.runtime.hooks as hooks

    hooks.uninstall()


def stats() -> dict[str, Any]:
    """The JIT's counters as a dict (the same keys as ``--stats-json``)."""
    hooks = sys.modules.get("tracejit.runtime.hooks")
    if hooks is not None:
        hooks.sync_stats()
    return STATS.as_dict()
