"""``relib-pure run PATH``: load, call, unload, verify, and print the unload report.

Exit status: 0 the unload was clean, 1 a check failed or the unload was not
clean (still mapped, leaks, threads still running, crash under ``--isolated``;
with ``--cycles``, a figure grew: :mod:`.run_cycles`), 2 the library could not
be read or loaded.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["configure_parser", "execute", "render_text"]


#: the keys of :data:`relib_pure.runtime.probe.RESTYPES`, spelled out so that
#: building the parser does not import the runtime (every command would pay it)
RESTYPE_NAMES = ("bool", "double", "float", "int", "int16", "int32", "int64", "int8", "long",
                 "pointer", "size_t", "str", "uint", "uint16", "uint32", "uint64", "uint8",
                 "ulong", "void")


def add_cycle_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with the hidden ``probe`` child command."""
    parser.add_argument("path", help="the shared library")
    parser.add_argument("--call", metavar="SYMBOL",
                        help="call this exported function after loading: NAME, "
                             "'NAME(2, 3.5, \"text\")' (argument types from the literals) or "
                             "NAME:RET(TYPE,...) with --arg values; without declared types it "
                             "is called as int NAME(void), so a result of a function returning "
                             "anything else is garbage. A relib module's main is always called "
                             "first, as relib's host does ('--call main' calls it --times "
                             "times instead)")
    parser.add_argument("--arg", dest="args", action="append", default=[], metavar="VALUE",
                        help="an argument of --call (repeatable; converted to the declared "
                             "type, else integer, float or string)")
    parser.add_argument("--restype", choices=RESTYPE_NAMES, default=None,
                        help="return type of --call (default: int, undeclared)")
    parser.add_argument("--times", type=int, default=1, metavar="N",
                        help="call it N times (default 1)")
    parser.add_argument("--owner", choices=("thread", "caller"), default="thread",
                        help="run the module on a dedicated owner thread (default) or here")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the static compatibility checks")
    parser.add_argument("--lazy", action="store_true",
                        help="dlopen with RTLD_LAZY instead of RTLD_NOW")
    parser.add_argument("--deepbind", action="store_true", help="dlopen with RTLD_DEEPBIND")
    parser.add_argument("--plain", dest="protocol", action="store_false",
                        help="treat a relib module as a plain library (no relib protocol)")


def configure_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run", help="load, call, unload and verify a library",
        description=__doc__.splitlines()[0])
    add_cycle_arguments(parser)
    parser.add_argument("--isolated", action="store_true",
                        help="run the cycle in a child process (a crash becomes a report)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds before an --isolated child is killed (default 60)")
    from relib_pure.cli import run_cycles

    run_cycles.add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON (schemas/run.json)")
    parser.set_defaults(func=execute)


def render_text(data: dict[str, Any]) -> str:
    """Human rendering of the same dict ``--json`` prints."""
    err = data.get("error")
    if err and data.get("unload") is None and str(err["code"]).startswith("inspect."):
        # nothing was loaded: the input is the problem, not an unload verdict
        return f"{data['path']}: cannot run: {err['message']} [{err['code']}]"
    lines = [f"{data['path']}: {'clean' if data['clean'] else 'NOT CLEAN'} "
             f"(stage reached: {data['stage']}{', isolated' if data['isolated'] else ''})"]
    main = data.get("main")
    if main:
        lines.append(f"  called {main['symbol']} (relib main)"
                     + (f" -> {main['result']!r}" if main["result"] is not None else ""))
    call = data.get("call")
    if call:
        values = ", ".join(repr(a) for a in call.get("args", []))
        lines.append(f"  called {call.get('signature', call['symbol'] + '()')}"
                     + (f" with ({values})" if values else "") + f" x{call['times']}"
                     + (f" -> {call['last_result']!r}" if call["restype"] != "void" else ""))
        if not call.get("declared", True):
            types = ",".join(call.get("argtypes", []))
            lines.append("  (return type not declared: read as int, meaningless if the "
                         "function returns anything else; declare it, e.g. "
                         f"--call '{call['symbol']}:double({types})' or --restype)")
    proc = data.get("process")
    if proc and (proc["signal"] is not None or proc["timed_out"]):
        why = f"killed by {proc['signal_name']}" if proc["signal"] else "timed out"
        lines.append(f"  child process {why}")
        tail = proc["stderr"].strip().splitlines()[-5:]
        lines.extend(f"    | {t}" for t in tail)
    err = data.get("error")
    if err:
        lines.append(f"  error [{err['code']}]: {err['message']}")
    unload = data.get("unload")
    if unload:
        refused = err is not None and err["code"] == "unload.threads-running"
        verdict = ("unloaded" if unload["unloaded"] else
                   "still loaded: unload refused (nothing was closed)" if refused else
                   "STILL MAPPED")
        lines.append(f"  {verdict}")
        for c in unload["causes"]:
            lines.append(f"  cause {c['code']}: {c['message']}"
                         + (f" [{c['detail']}]" if c["detail"] else ""))
        leaks = unload["leaks"]
        for t in leaks["threads"]:
            lines.append(f"  thread still running: tid {t['tid']} {t['name']!r}")
        for f in leaks["fds"]:
            lines.append(f"  descriptor left open: fd {f['fd']} -> {f['target']}")
        for m in leaks["mappings"]:
            lines.append(f"  mapping left: {m['start']:#x} {m['perms']} {m['size']} bytes "
                         f"{m['path'] or 'anonymous'}")
    return "\n".join(lines)


def execute(args: argparse.Namespace) -> int:
    from relib_pure.runtime.probe import native_stdout_to_stderr, probe, run_cycle

    if args.times < 1:
        print("relib-pure run: --times must be at least 1", file=sys.stderr)
        return 2
    if args.cycles is not None:
        from relib_pure.cli.run_cycles import execute_cycles

        if args.args or (args.call is not None and not args.call.replace("_", "a").isalnum()):
            print("relib-pure run: --cycles calls a bare --call NAME (no arguments)",
                  file=sys.stderr)
            return 2
        if args.restype is None:
            args.restype = "void"  # what --cycles has always assumed
        from relib_pure.runtime.cycles import _RESTYPES as cycle_restypes

        if args.restype not in cycle_restypes:
            print(f"relib-pure run: --cycles takes --restype {', '.join(cycle_restypes)}",
                  file=sys.stderr)
            return 2
        return execute_cycles(args)
    if args.args and args.call is None:
        print("relib-pure run: --arg needs --call", file=sys.stderr)
        return 2
    if args.call is not None:
        from relib_pure.runtime.callspec import parse_call

        try:
            parse_call(args.call, args.args, args.restype)
        except ValueError as e:
            if args.json:
                print(json.dumps({"version": 1, "path": args.path, "error": {
                    "code": "usage", "message": str(e), "path": None}}, indent=2))
            print(f"relib-pure run: {e}", file=sys.stderr)
            return 2
    result: Any
    if args.isolated:
        result = probe(args.path, call=args.call, restype=args.restype, times=args.times,
                       owner=args.owner, check=args.check, lazy=args.lazy,
                       deepbind=args.deepbind, protocol=args.protocol, timeout=args.timeout,
                       args=args.args)
    else:
        with native_stdout_to_stderr():
            result = run_cycle(args.path, call=args.call, restype=args.restype,
                               times=args.times, owner=args.owner, check=args.check,
                               lazy=args.lazy, deepbind=args.deepbind, protocol=args.protocol,
                               args=args.args)
    data = result.to_dict()
    try:
        print(json.dumps(data, indent=2) if args.json else render_text(data), flush=True)
    except BrokenPipeError:
        from relib_pure.cli.main import reader_gone

        reader_gone(sys.stdout)  # `| head`: the verdict is still the exit status
    return int(result.exit_code)
