"""``relib-pure watch LIB``: keep the newest good build of a library loaded, one line per reload.

Each line says which version now serves, the time from the file change to
the new code having run, and whether the previous version really left the
process; a refused version's line says why (and the old one keeps serving).
``--build CMD`` runs on every change under ``--src DIR``. Ctrl-C (or
SIGTERM) unloads the last version and ends.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["configure_parser", "execute", "render_event"]

EPILOG = ("exit status: 0 stopped (Ctrl-C, SIGTERM or --count reached) with the last version "
          "unloaded clean, 1 the last version did not unload clean, 2 usage error or the "
          "first version could not be loaded")

RESTYPE_NAMES = ("double", "int", "int64", "uint64", "void")


def configure_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "watch", help="reload a library whenever it is rebuilt", description=__doc__.splitlines()[0],
        epilog=EPILOG)
    parser.add_argument("path", metavar="LIB", help="the shared library to keep loaded")
    parser.add_argument("--build", metavar="CMD",
                        help="build command run on source changes (split like a shell does); "
                             "its output is shown when it fails, always with -v")
    parser.add_argument("--src", metavar="DIR", action="append", default=[],
                        help="source directory to watch (repeatable; needs --build)")
    parser.add_argument("--call", metavar="SYMBOL",
                        help="after each load call this function (no arguments) and show its "
                             "result; a relib module's Exports function")
    parser.add_argument("--restype", choices=RESTYPE_NAMES, default="int",
                        help="return type of --call (default: int)")
    parser.add_argument("--init", metavar="SYMBOL",
                        help="plain library: an int SYMBOL(void) run after each load; nonzero "
                             "refuses the version")
    parser.add_argument("--main", action="store_true",
                        help="relib module: call its main after each load (the command line "
                             "implements no imports: a main that calls one aborts; use "
                             "relib_pure.Reloader(imports=...) for those)")
    parser.add_argument("--poll", type=float, metavar="S",
                        help="poll every S seconds instead of inotify (containers, NFS)")
    parser.add_argument("--debounce", type=float, default=0.05, metavar="S",
                        help="quiet time before a change is acted on (default 0.05)")
    parser.add_argument("--trial", action="store_true",
                        help="run each new version in a child process first (a crash rejects it)")
    parser.add_argument("--count", type=int, metavar="N",
                        help="stop after N reload events (the first load counts)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON lines (schemas/watch.json)")
    parser.set_defaults(func=execute)


def render_event(data: dict[str, Any]) -> str:
    """Human rendering of one JSON line."""
    if data["event"] == "stopped":
        unload = data["unload"]
        verdict = "nothing was loaded" if unload is None else (
            "unloaded clean" if unload["clean"] else
            "unloaded with leaks" if unload["unloaded"] else "STILL MAPPED")
        return f"stopped: last version {verdict}"
    timings = data["timings_ms"]
    outcome = data["outcome"]
    line = f"v{data['candidate']} {outcome}"
    if "total" in timings:
        line += f": change to new code running {timings['total']:.1f} ms"
    unload = data["unload"]
    if unload is not None and outcome in ("loaded", "rolled-back"):
        line += "; previous " + ("unloaded clean" if unload["clean"] else
                                 "unloaded with leaks" if unload["unloaded"] else "STILL MAPPED")
    call = data.get("call")
    if call is not None:
        line += (f"; {call['symbol']}() -> {call['result']}" if call["error"] is None
                 else f"; {call['symbol']}() failed: {call['error']['message']}")
    if data["serving"] is not None and outcome != "loaded":
        line += f"; v{data['serving']} keeps serving"
    reason = data["reason"]
    if reason is not None:
        line += f"\n  reason [{reason['code']}]: {reason['message']}"
    build = data["build"]
    if build is not None and not build["returncode"] == 0:
        tail = [ln for ln in build["output"].splitlines() if ln.strip()][-10:]
        line += "".join(f"\n  | {ln}" for ln in tail)
    return line


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _call(reloader: Any, args: argparse.Namespace) -> dict[str, Any] | None:
    if args.call is None:
        return None
    from relib_pure.errors import RelibError
    from relib_pure.runtime.probe import RESTYPES

    fn = reloader.function(args.call, RESTYPES[args.restype], (),
                           trait="Exports" if reloader.spec.relib else None)
    try:
        result = fn()
    except RelibError as e:
        return {"symbol": args.call, "result": None, "error": e.to_dict()}
    return {"symbol": args.call, "result": result, "error": None}


def execute(args: argparse.Namespace) -> int:
    from relib_pure.errors import RelibError
    from relib_pure.reload import Reloader
    from relib_pure.reload.events import SCHEMA_VERSION
    from relib_pure.runtime.probe import native_stdout_to_stderr

    if args.src and not args.build:
        print("relib-pure watch: --src needs --build", file=sys.stderr)
        return 2
    if args.count is not None and args.count < 1:
        print("relib-pure watch: --count must be at least 1", file=sys.stderr)
        return 2
    with native_stdout_to_stderr() as out, _sigterm_as_interrupt():
        def emit(data: dict[str, Any]) -> None:
            text = json.dumps(data) if args.json else render_event(data)
            try:
                os.write(out, (text + "\n").encode())
            except BrokenPipeError:
                raise KeyboardInterrupt from None
        try:
            reloader = Reloader(args.path, build=shlex.split(args.build) if args.build else None,
                                src=args.src or None, init=args.init, main=args.main, poll=args.poll,
                                debounce=args.debounce, trial="child" if args.trial else None)
        except RelibError as e:
            if args.json:
                emit({"version": SCHEMA_VERSION, "event": "error", "error": e.to_dict()})
            else:
                print(f"relib-pure watch: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 0
        seen = 0
        report = None
        try:
            while args.count is None or seen < args.count:
                event = reloader.next_event(0.2)
                if event is None:
                    continue
                seen += 1
                data = event.to_dict()
                data["call"] = _call(reloader, args) if event.outcome == "loaded" else None
                emit(data)
        except KeyboardInterrupt:
            logger.info("interrupted: unloading and stopping")
        finally:
            report = reloader.close()
        try:
            emit({"version": SCHEMA_VERSION, "event": "stopped",
                  "unload": report.to_dict() if report is not None else None})
        except KeyboardInterrupt:
            pass
    return 0 if report is None or report.clean else 1
