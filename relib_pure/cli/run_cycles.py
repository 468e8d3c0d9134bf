"""``relib-pure run PATH --cycles N``: N load -> call -> unload cycles and the growth per resource.

The cycles are :mod:`relib_pure.runtime.cycles`' (the same as
``relib_pure.testing`` and the pytest plugin). The JSON is ``run --json``'s
document (``schemas/run.json``) with a ``cycles`` object: per-cycle figures,
the growth of each resource and the cycles that were not clean; ``unload`` is
the first report that was not clean, or the last one.

Exit status: 0 every cycle clean and nothing grew, 1 a cycle was not clean or
a figure grew, 2 the library could not be read or loaded.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
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
    if args.isolated:
        return _usage(args, "--cycles runs in this process; it cannot be combined with "
                            "--isolated")
    try:
        tolerance = parse_tolerances(args.tolerance)
    except ValueError as e:
        return _usage(args, str(e))
    cycle = LibraryCycle(args.path, call=args.call, restype=args.restype, times=args.times,
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

