"""tracejit.params: defaults, validation, and the CLI's --param syntax."""

from __future__ import annotations

import dataclasses

import pytest

import tracejit
from tracejit.params import Params, parse_param_string


def test_defaults() -> None:
    p = Params()
    assert p.threshold == 1039
    assert p.function_threshold == 1619
    assert p.trace_eagerness == 200
    assert p.trace_limit == 6000
    assert p.inlining is True
    assert p.max_inline_depth == 8
    assert p.max_aborts == 3
    assert p.code_cache_size == 64 * 1024 * 1024
    assert p.jit_time_percent == 10


def test_every_field_is_int_or_bool() -> None:
    for f in dataclasses.fields(Params()):
        assert isinstance(getattr(Params(), f.name), int), f.name


def test_update_sets_values() -> None:
    p = Params()
    p.update(threshold=3, inlining=False, trace_limit=10)
    assert (p.threshold, p.inlining, p.trace_limit) == (3, False, 10)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"nope": 1}, "unknown tracejit parameter 'nope'"),
        ({"threshold": 0}, "positive integer"),
        ({"threshold": -1}, "positive integer"),
        ({"threshold": "5"}, "positive integer"),
        ({"threshold": 2.5}, "positive integer"),
        ({"threshold": True}, "positive integer"),
        ({"inlining": 1}, "True or False"),
        ({"inlining": "on"}, "True or False"),
        ({"jit_time_percent": 101}, "at most 100"),
        ({"jit_time_percent": 0}, "positive integer"),
    ],
)
def test_update_rejects_bad_values(changes: dict[str, object], needle: str) -> None:
    p = Params()
    with pytest.raises(ValueError, match=needle):
        p.update(**changes)
    assert p == Params()


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValueError) as info:
        Params().update(treshold=5)
    assert "threshold" in str(info.value) and "treshold" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("threshold=1", {"threshold": 1}),
        (" threshold = 12 , inlining = off ", {"threshold": 12, "inlining": False}),
        ("inlining=on", {"inlining": True}),
        ("inlining=YES", {"inlining": True}),
        ("inlining=0", {"inlining": False}),
        ("inlining=false", {"inlining": False}),
        ("", {}),
        (",,", {}),
        ("threshold=1,threshold=2", {"threshold": 2}),
        ("code_cache_size=1048576", {"code_cache_size": 1048576}),
    ],
)
def test_parse_param_string(text: str, expected: dict[str, object]) -> None:
    assert parse_param_string(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("threshold", "name=value"),
        ("bogus=1", "unknown tracejit parameter 'bogus'"),
        ("threshold=x", "must be an integer"),
        ("threshold=1.5", "must be an integer"),
        ("inlining=2", "must be on or off"),
    ],
)
def test_parse_param_string_errors(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_param_string(text)


def test_parsed_strings_apply_to_params() -> None:
    p = Params()
    p.update(**parse_param_string("threshold=5,max_aborts=2,inlining=off"))
    assert (p.threshold, p.max_aborts, p.inlining) == (5, 2, False)


def test_package_api_shape() -> None:
    assert callable(tracejit.enable) and callable(tracejit.disable)
    assert isinstance(tracejit.params, Params)
    assert tracejit.available() == (tracejit.unavailable_reason() == "")
    stats = tracejit.stats()
    for key in ("traces_started", "traces_compiled", "bridges_compiled", "aborts",
                "guard_failures", "native_entries", "time_in_jit_s"):
        assert key in stats
