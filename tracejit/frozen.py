"""`frozen`: a record class the type checker treats as a frozen dataclass,
built as a plain slots dataclass at run time.

The JIT builds hundreds of thousands of small records (decoded instructions,
snapshot entries, constants, machine ops) while the program waits; a frozen
dataclass sets every field through ``object.__setattr__`` and is about 3x
slower to build.  Equality and hashing are a frozen dataclass's (by fields);
only the run-time guard against assignment is gone, and mypy keeps that one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import dataclass_transform


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen[T](cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
