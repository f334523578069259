"""A private copy of the builtins for the JIT's own modules.

The JIT's Python code runs inside the program (monitoring callbacks); a
program that rebinds a builtin (``builtins.len = ...``) must not change what
the JIT computes, nor run its replacement from inside the JIT.  Each runtime
module sets ``__builtins__ = PRIVATE`` after its imports: functions defined
after that capture this copy, taken when tracejit was first imported.
"""

import builtins

PRIVATE: dict[str, object] = dict(builtins.__dict__)
