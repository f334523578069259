"""Command line: ``python -m tracejit run [OPTIONS] SCRIPT|-m MODULE [ARGS...]``.

``run`` executes a program the way ``python SCRIPT`` / ``python -m MODULE`` would
(same ``sys.argv``, ``__main__`` module, ``sys.path[0]`` and exit code), with the
JIT turned on.  Bad JIT options never stop the program: they are reported on
stderr and the program runs with default parameters (or without the JIT).
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib.util
import json
import os
import platform
import runpy
import sys
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

import tracejit
from tracejit.params import Params, parse_param_string

PROG = "python -m tracejit"

USAGE = f"""\
usage: {PROG} run [OPTIONS] SCRIPT [ARGS...]
       {PROG} run [OPTIONS] -m MODULE [ARGS...]
       {PROG} info
       {PROG} --version

run options (before SCRIPT or -m):
  --no-jit                 run the program the same way, JIT not enabled
  --stats                  print the JIT's counters to stderr at exit
  --stats-json PATH        write the JIT's counters as JSON to PATH at exit
  --param NAME=VALUE[,NAME=VALUE...]
                           set JIT parameters (repeatable; see `{PROG} info`)
  --threshold N            shortcut for --param threshold=N
  --                       end of options: the next argument is SCRIPT
"""


def _err(message: str) -> None:
    print(f"tracejit: {message}", file=sys.stderr, flush=True)


def version() -> str:
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version

        try:
            return dist_version("tracejit")
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover - stdlib always has it
        pass
    return str(getattr(tracejit, "__version__", "unknown"))


# --------------------------------------------------------------------------- run options


@dataclass
class RunOptions:
    jit: bool = True
    stats_text: bool = False
    stats_json: str | None = None
    param_texts: list[str] = field(default_factory=list)
    module: str | None = None
    script: str | None = None
    args: list[str] = field(default_factory=list)
    # Problems found while parsing that do not stop the program (reported on stderr).
    warnings: list[str] = field(default_factory=list)


class UsageError(Exception):
    pass


_VALUE_OPTIONS = ("--stats-json", "--param", "--threshold")


def parse_run_args(argv: list[str]) -> RunOptions:
    """Parse ``run``'s arguments: options up to SCRIPT / ``-m MODULE``, the rest is the
    program's.  Raises UsageError only when there is no program to run."""
    opts = RunOptions()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            if i >= len(argv):
                raise UsageError("missing SCRIPT after --")
            opts.script = argv[i]
            opts.args = argv[i + 1 :]
            return opts
        if arg == "-m" or (arg.startswith("-m") and not arg.startswith("--")):
            module = arg[2:] if len(arg) > 2 else None
            if module is None:
                i += 1
                if i >= len(argv):
                    raise UsageError("-m needs a MODULE name")
                module = argv[i]
            opts.module = module
            opts.args = argv[i + 1 :]
            return opts
        if not arg.startswith("-") or arg == "-":
            opts.script = arg
            opts.args = argv[i + 1 :]
            return opts
        name, eq, inline_value = arg.partition("=")
        if name in _VALUE_OPTIONS:
            if eq:
                value = inline_value
            else:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{name} needs a value")
                value = argv[i]
            if name == "--stats-json":
                opts.stats_json = value
            elif name == "--param":
                opts.param_texts.append(value)
            else:
                opts.param_texts.append(f"threshold={value}")
        elif arg == "--no-jit":
            opts.jit = False
        elif arg == "--stats":
            opts.stats_text = True
        elif arg in ("-h", "--help"):
            raise UsageError("")
        else:
            opts.warnings.append(f"unknown option {arg!r} ignored (see `{PROG} --help`)")
        i += 1
    raise UsageError("missing SCRIPT or -m MODULE")


def resolve_params(param_texts: list[str]) -> tuple[dict[str, object], list[str]]:
    """Parse and validate every --param/--threshold.  On any problem, return no
    changes (defaults) and the messages naming each problem."""
    changes: dict[str, object] = {}
    problems: list[str] = []
    for text in param_texts:
        try:
            parsed = parse_param_string(text)
        except ValueError as exc:
            problems.append(f"bad --param {text!r}: {exc}")
            continue
        try:
            Params().update(**parsed)
        except ValueError as exc:
            problems.append(f"bad --param {text!r}: {exc}")
            continue
        changes.update(parsed)
    if problems:
        return {}, problems
    return changes, []


def _check_writable(path: str) -> str:
    """'' when ``path`` looks writable, else the reason it is not."""
    if os.path.isdir(path):
        return "it is a directory"
    if os.path.exists(path):
        return "" if os.access(path, os.W_OK) else "permission denied"
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        return f"directory {parent!r} does not exist"
    if not os.access(parent, os.W_OK):
        return f"directory {parent!r} is not writable"
    return ""


# --------------------------------------------------------------------------- reporting


class _Reporter:
    """Writes the stats at exit (registered with atexit before the program runs, so it
    runs after the program's own atexit handlers)."""

    def __init__(self, text: bool, json_path: str | None, jit_enabled: bool) -> None:
        self.text = text
        self.json_path = json_path
        self.jit_enabled = jit_enabled
        self.done = False

    def report(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            data: dict[str, Any] = tracejit.stats()
        except Exception as exc:  # the JIT's own bug must not change the exit code
            _err(f"could not read the JIT's stats: {exc!r}")
            return
        if self.text:
            try:
                from tracejit.stats import STATS

                text = STATS.to_text()
                if not self.jit_enabled:
                    text += "\n  (JIT not enabled in this run)"
                print(text, file=sys.stderr, flush=True)
            except Exception as exc:
                _err(f"could not print the JIT's stats: {exc!r}")
        if self.json_path is not None:
            out = dict(data)
            out["jit_enabled"] = self.jit_enabled
            try:
                with open(self.json_path, "w", encoding="utf-8") as f:
                    json.dump(out, f, indent=2, sort_keys=True)
                    f.write("\n")
            except OSError as exc:
                _err(f"could not write --stats-json file {self.json_path!r}: {exc}")
            except (TypeError, ValueError) as exc:
                _err(f"could not encode the JIT's stats as JSON: {exc}")


# --------------------------------------------------------------------------- running


def _trim_traceback(tb: types.TracebackType | None) -> types.TracebackType | None:
    """Drop the launcher's frames (this module, runpy) from the top of a traceback,
    so it reads like ``python SCRIPT``'s.  None when every frame is the launcher's."""
    skip = {_trim_traceback.__code__.co_filename, runpy.__file__, "<frozen runpy>"}
    start = tb
    while start is not None and start.tb_frame.f_code.co_filename in skip:
        start = start.tb_next
    return start


def _exit_code(exc: SystemExit) -> int:
    """The process exit code Python gives for an uncaught SystemExit."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr, flush=True)
    return 1


def _enable_jit(changes: dict[str, object]) -> bool:
    reason = tracejit.unavailable_reason()
    if reason:
        _err(f"JIT unavailable, running without it: {reason}")
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tracejit.enable(**changes)
    except Exception as exc:
        _err(f"could not enable the JIT, running without it: {type(exc).__name__}: {exc}")
        return False


def _run_program(opts: RunOptions) -> int:
    if opts.module is not None:
        try:
            spec = importlib.util.find_spec(opts.module)
        except (ImportError, ValueError) as exc:
            _err(f"error while finding module {opts.module!r}: {exc}")
            return 1
        if spec is None:
            _err(f"No module named {opts.module}")
            return 1
        sys.argv = [opts.module, *opts.args]  # run_module sets argv[0] to the file
        sys.path[0] = os.getcwd()
        runpy.run_module(opts.module, run_name="__main__", alter_sys=True)
        return 0
    script = opts.script
    assert script is not None
    if not os.path.exists(script):
        _err(f"can't open file {os.path.abspath(script)!r}: [Errno 2] No such file or directory")
        return 2
    sys.argv = [script, *opts.args]
    if os.path.isdir(script) or not script.endswith((".py", ".pyw")) and _is_zip(script):
        # run_path puts a directory / zip archive on sys.path itself.
        del sys.path[0]
    else:
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    runpy.run_path(script, run_name="__main__")
    return 0


def _is_zip(path: str) -> bool:
    import zipfile

    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def cmd_run(argv: list[str]) -> int:
    try:
        opts = parse_run_args(argv)
    except UsageError as exc:
        if str(exc):
            _err(str(exc))
            print(USAGE, file=sys.stderr, end="")
            return 2
        print(USAGE, end="")
        return 0
    for message in opts.warnings:
        _err(message)

    changes, problems = resolve_params(opts.param_texts)
    for message in problems:
        _err(message)
    if problems:
        _err("ignoring all --param/--threshold options: running with default parameters")

    if opts.stats_json is not None:
        opts.stats_json = os.path.abspath(opts.stats_json)
        why = _check_writable(opts.stats_json)
        if why:
            _err(f"--stats-json file {opts.stats_json!r} looks unwritable ({why}); "
                 "the program runs anyway")

    jit_enabled = _enable_jit(changes) if opts.jit else False
    if opts.stats_text or opts.stats_json is not None:
        reporter = _Reporter(opts.stats_text, opts.stats_json, jit_enabled)
        atexit.register(reporter.report)

    try:
        return _run_program(opts)
    except SystemExit as exc:
        return _exit_code(exc)
    except BaseException as exc:
        # Like python's own top level: the program's sys.excepthook, exit code 1
        # (130 for Ctrl-C, as a shell reports a SIGINT death).
        tb = _trim_traceback(exc.__traceback__)
        if tb is None and isinstance(exc, ImportError):
            # runpy's own "No module named pkg.__main__; 'pkg' is a package and cannot
            # be directly executed": python prints just the message.
            _err(str(exc))
            return 1
        if tb is None:
            tb = exc.__traceback__
        exc.__traceback__ = tb
        try:
            sys.excepthook(type(exc), exc, tb)
        except BaseException:
            sys.__excepthook__(type(exc), exc, tb)
        return 130 if isinstance(exc, KeyboardInterrupt) else 1


# --------------------------------------------------------------------------- info


def cmd_info() -> int:
    reason = tracejit.unavailable_reason()
    print(f"tracejit {version()}")
    print(f"python: {platform.python_implementation()} {platform.python_version()} "
          f"({sys.executable})")
    print(f"platform: {sys.platform} {platform.machine()}")
    print(f"available: {'yes' if not reason else 'no'}")
    if reason:
        print(f"reason: {reason}")
    print("parameters (name = default; set with --param name=value):")
    defaults = Params()
    for f in dataclasses.fields(defaults):
        value = getattr(defaults, f.name)
        shown = ("on" if value else "off") if isinstance(value, bool) else str(value)
        print(f"  {f.name:<20} = {shown}")
    return 0


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in ("--version", "-V", "version"):
        print(f"tracejit {version()}")
        return 0
    if command == "run":
        return cmd_run(rest)
    if command == "info":
        return cmd_info()
    _err(f"unknown command {command!r}")
    print(USAGE, file=sys.stderr, end="")
    return 2
