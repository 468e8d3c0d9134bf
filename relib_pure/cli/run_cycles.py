"""``relib-pure run PATH --cycles N``: N load -> call -> unload cycles and the growth per resource.

The cycles are :mod:`relib_pure.runtime.cycles`' (the same as
``relib_pure.testing`` and the pytest plugin). The JSON is ``run --json``'s
document (``schemas/run.json``) with a ``cycles`` object: per-cycle figures,
the growth of each resource and the cycles that were not clean; ``unload`` is
the first report that was not clean, or the last one.

With ``--isolated`` the cycles run in a child process (the same command
without ``--isolated``): a crash in any cycle becomes the document's
``process`` (signal, stderr, and the ``cycle`` it died in), and this process
lives on.

Exit status: 0 every cycle clean and nothing grew, 1 a cycle was not clean or
a figure grew (or the isolated child crashed or timed out), 2 the library
could not be read or loaded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["add_arguments", "execute_cycles", "parse_tolerances"]

# a failed load is unreadable input (2), as for a single run
_USAGE_PREFIXES = ("inspect.", "load.", "compat.expectation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cycles", type=int, metavar="N",
                        help="repeat load -> call -> unload N times; print the growth of RSS, "
                             "VmSize, descriptors, threads and mappings; exit 1 on growth")
    parser.add_argument("--tolerance", action="append", default=[], metavar="RESOURCE=N",
                        help="allowed growth of one resource with --cycles (rss_kb, vmsize_kb, "
                             "fds, threads, mappings; repeatable)")


def parse_tolerances(items: list[str]) -> dict[str, int]:
    """``["fds=1", "rss_kb=4096"]`` -> ``{"fds": 1, "rss_kb": 4096}``; ``ValueError`` otherwise."""
    from relib_pure.runtime.figures import tolerances

    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise ValueError(f"--tolerance takes RESOURCE=N, not {item!r}")
        out[name.strip()] = int(value)
    tolerances(out)  # names and values checked once, where the defaults live
    return out


def _usage(args: argparse.Namespace, message: str) -> int:
    if args.json:
        print(json.dumps({"version": 1, "path": None,
                          "error": {"code": "usage", "message": message, "path": None}},
                         indent=2))
    print(f"relib-pure run: {message}", file=sys.stderr)
    return 2


def execute_cycles(args: argparse.Namespace) -> int:
    from relib_pure.errors import RelibError
    from relib_pure.runtime.cycles import LibraryCycle, run_cycles
    from relib_pure.runtime.probe import native_stdout_to_stderr

    if args.cycles < 1:
        return _usage(args, "--cycles must be at least 1")
    try:
        tolerance = parse_tolerances(args.tolerance)
    except ValueError as e:
        return _usage(args, str(e))
    if args.isolated:
        return _execute_isolated(args)
    progress = _progress_writer()
    cls = LibraryCycle if progress is None else _reporting_cycle(progress)
    cycle = cls(args.path, call=args.call, restype=args.restype, times=args.times,
                relib=None if args.protocol else False, owner=args.owner,
                check=args.check, lazy=args.lazy, deepbind=args.deepbind)
    try:
        with native_stdout_to_stderr():
            run = run_cycles(cycle, path=cycle.path, cycles=args.cycles, tolerance=tolerance)
    except RelibError as e:
        # nothing to judge: the library cannot even be loaded
        stage = "validate" if e.code.startswith(("inspect.", "compat.")) else "load"
        _print(args, _document(cycle, None, e.to_dict(), stage),
               f"{cycle.path}: cannot run: {e.message} [{e.code}]")
        return 2 if e.code.startswith(_USAGE_PREFIXES) else 1
    _print(args, _run_document(cycle, run), run.describe())
    return 0 if run.clean else 1


#: environment variable naming the descriptor an isolated child reports its progress on
PROGRESS_ENV = "RELIB_PURE_CYCLE_PROGRESS_FD"
_PROGRESS_SIZE = 128


def _progress_writer() -> Any:
    """In an isolated child: a function recording ``(cycle, stage)``, else ``None``.

    The record is rewritten in place at the start of a small file (never a
    pipe: ten thousand cycles must not fill a buffer nobody reads until the
    child ends), so what the parent finds is where the child last was.
    """
    raw = os.environ.pop(PROGRESS_ENV, None)
    if raw is None or not raw.isdigit():
        return None
    fd = int(raw)

    def record(cycle: int, stage: str) -> None:
        line = json.dumps({"cycle": cycle, "stage": stage}).encode()
        try:
            os.pwrite(fd, line.ljust(_PROGRESS_SIZE), 0)
        except OSError:
            pass
    return record


def _reporting_cycle(record: Any) -> Any:
    """A :class:`LibraryCycle` that records each cycle's stages with ``record``."""
    from relib_pure.runtime.cycles import LibraryCycle

    class ReportingCycle(LibraryCycle):
        number = 0

        def load(self) -> Any:
            self.number += 1
            record(self.number, "load")
            return super().load()

        def invoke(self, module: Any) -> tuple[Any, Any]:
            record(self.number, "call")
            return super().invoke(module)

        def unload(self, module: Any, result: Any = None, main_result: Any = None) -> Any:
            record(self.number, "unload")
            return super().unload(module, result, main_result)
    return ReportingCycle


def _child_command(args: argparse.Namespace) -> list[str]:
    """This very ``run --cycles`` command, without ``--isolated``, for the child."""
    from relib_pure.runtime.probe import cycle_flags

    return [sys.executable, "-X", "faulthandler", "-m", "relib_pure", "run", "--json",
            "--cycles", str(args.cycles), *[f"--tolerance={t}" for t in args.tolerance],
            *cycle_flags(call=args.call, restype=args.restype, times=args.times,
                         owner=args.owner, check=args.check, lazy=args.lazy,
                         deepbind=args.deepbind, protocol=args.protocol),
            "--", args.path]  # a path may begin with "-"


def _execute_isolated(args: argparse.Namespace) -> int:
    from relib_pure.runtime.probe import child_env, signal_name

    env = child_env()
    with tempfile.TemporaryFile() as progress:
        env[PROGRESS_ENV] = str(progress.fileno())
        timed_out = False
        try:
            proc = subprocess.run(_child_command(args), capture_output=True, text=True,
                                  errors="replace", timeout=args.timeout, env=env,
                                  pass_fds=(progress.fileno(),), stdin=subprocess.DEVNULL)
            returncode: int | None = proc.returncode
            out, err = proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as e:
            timed_out, returncode = True, None
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else ""
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else ""
        where = _last_progress(progress.fileno())
    sig = -returncode if returncode is not None and returncode < 0 else None
    process = {"exit_status": returncode if returncode is not None and returncode >= 0 else None,
               "signal": sig, "signal_name": signal_name(sig) if sig else None,
               "timed_out": timed_out, "stderr": err, "cycle": where.get("cycle")}
    try:
        data = json.loads(out) if sig is None and not timed_out else None
    except ValueError:
        data = None
    if isinstance(data, dict) and "cycles" in data:
        # the child finished: its verdict stands, with how its process ended
        data.update(isolated=True, process=process)
        _print(args, data, _isolated_text(data))
        return returncode if returncode in (0, 1, 2) else 1
    stage = str(where.get("stage", "load"))
    data = {"version": 1, "path": args.path, "isolated": True, "stage": stage, "clean": False,
            "main": None, "call": None, "unload": None, "error": None, "process": process,
            "cycles": None}
    _print(args, data, _isolated_text(data))
    return 1


def _last_progress(fd: int) -> dict[str, Any]:
    try:
        raw = os.pread(fd, _PROGRESS_SIZE, 0).strip()
        found = json.loads(raw) if raw else {}
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _isolated_text(data: dict[str, Any]) -> str:
    proc = data["process"]
    if data.get("cycles") is not None:
        from relib_pure.cli.run_cmd import render_text

        return render_text(data)
    why = f"killed by {proc['signal_name']}" if proc["signal"] else \
        "timed out" if proc["timed_out"] else f"exited with status {proc['exit_status']}"
    at = f" during cycle {proc['cycle']} ({data['stage']})" if proc["cycle"] else ""
    lines = [f"{data['path']}: NOT CLEAN (isolated child {why}{at})"]
    lines += [f"    | {t}" for t in proc["stderr"].strip().splitlines()[-5:]]
    return "\n".join(lines)


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _document(cycle: Any, run: Any, error: dict[str, Any] | None, stage: str) -> dict[str, Any]:
    return {"version": 1, "path": cycle.path, "isolated": False, "stage": stage,
            "clean": bool(run is not None and run.clean), "main": None, "call": None,
            "unload": None, "error": error, "process": None,
            "cycles": run.to_dict() if run is not None else None}


def _run_document(cycle: Any, run: Any) -> dict[str, Any]:
    from relib_pure.runtime.probe import _json_value

    shown = run.failures[0][1] if run.failures else run.last
    error = None
    if run.stopped_by is not None and run.stopped_by.error is not None:
        error = run.stopped_by.error.to_dict()
    elif not run.clean:
        error = {"code": run.error_code, "message": run.describe(with_path=False),
                 "path": cycle.path}
    if run.completed == run.requested and run.stopped_by is None:
        stage = "done"
    else:  # stopped: by a failed call, or by an unload that left the library in place
        stage = "call" if error is not None and str(error["code"]).startswith("call.") \
            else "unload"
    data = _document(cycle, run, error, stage)
    last = run.last
    if cycle.calls_main and last is not None:
        data["main"] = {"symbol": "__relib__main", "result": _json_value(last.main_result)}
    if cycle.call is not None and last is not None:
        data["call"] = {"symbol": str(cycle.call), "restype": cycle.restype,
                        "times": cycle.times, "last_result": _json_value(last.result)}
    reports = shown.reports if shown is not None else ()
    report = next((r for r in reports if not r.clean), reports[-1] if reports else None)
    data["unload"] = report.to_dict() if report is not None else None
    return data

