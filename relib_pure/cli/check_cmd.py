"""``relib-pure check PATH``: compatibility findings for one library.

Exit status: 0 no error findings, 1 at least one error finding, 2 usage error
or unreadable input (the library, the ``--like`` file, or a rustc that cannot
be run). ``--json`` prints ``CheckReport.to_dict()`` (``schemas/check.json``);
on exit 2 it prints ``{"version": 1, "path": ..., "error": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, TextIO

from relib_pure.cli.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, reader_gone

logger = logging.getLogger(__name__)


def configure_parser(subparsers: Any) -> None:
    """Register the ``check`` subcommand."""
    p = subparsers.add_parser(
        "check", help="check that a library is compatible and loadable here",
        description="Check a library against this interpreter and an expectation, without "
                    "loading it.",
        epilog="exit status: 0 no error findings, 1 error findings, 2 usage or unreadable input")
    # optional here so that `--exports A B lib.so` (path swallowed) can be repaired
    p.add_argument("path", metavar="PATH", nargs="?", help="library to check")
    expect = p.add_mutually_exclusive_group()
    expect.add_argument("--expect-rustc", metavar="V",
                        help="expected rustc version (e.g. '1.95.0' or the full "
                             "'1.95.0 (59807616e 2026-04-14)')")
    expect.add_argument("--rustc-from-path", action="store_true",
                        help="expect the compilation info of `rustc -vV` (rustc on PATH or $RUSTC)")
    expect.add_argument("--like", metavar="OTHER",
                        help="expect the same compilation info as OTHER (host dylib or sibling)")
    p.add_argument("--exports", nargs="+", action=NameList, default=[], metavar="NAME",
                   help="symbols (or relib function names: add, Exports::add) that must be "
                        "exported; repeatable, comma-separated lists allowed")
    p.add_argument("--imports", nargs="+", action=NameList, default=[], metavar="NAME",
                   help="import slots / references the host provides; repeatable, "
                        "comma-separated lists allowed")
    p.add_argument("--no-resolve", action="store_true",
                   help="do not search NEEDED libraries and undefined symbols")
    p.add_argument("--no-unload", action="store_true",
                   help="the host will not unload: unload hazards are only informational")
    p.add_argument("--require-relib", action="store_true",
                   help="a library without relib compilation info is an error")
    p.add_argument("--ignore", action="append", default=[], metavar="CODE",
                   help="drop findings with this code or namespace (repeatable)")
    p.add_argument("--relax", action="append", default=[], metavar="CODE",
                   help="report errors with this code or namespace as warnings (repeatable)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=execute)


class NameList(argparse.Action):
    """``--exports A B``, ``--exports A,B`` and ``--exports A --exports B`` all
    extend one list; records which list a space-separated run extended last
    (see :func:`execute`)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        names = list(getattr(namespace, self.dest, None) or [])
        for value in values:
            names.extend(n.strip() for n in str(value).split(",") if n.strip())
        setattr(namespace, self.dest, names)
        # only a space-separated run can have taken PATH as its last word
        spaced = len(values) > 1 and "," not in str(values[-1])
        namespace.last_name_list = self.dest if spaced else None


def execute(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the check and render it; returns the exit status."""
    from relib_pure.compat import Expectation, Policy, check
    from relib_pure.errors import RelibError

    out = out or sys.stdout
    if args.path is None:
        last = getattr(args, "last_name_list", None)
        names: list[str] = getattr(args, last) if last else []
        if not names:
            return _usage(args, out, "the following arguments are required: PATH")
        # `--exports A B lib.so`: the option took the path as one more name
        args.path = names.pop()
    try:
        expectation = None
        if args.expect_rustc is not None:
            if not args.expect_rustc.strip():
                # an empty version would silently compare nothing
                return _usage(args, out, "--expect-rustc needs a version, e.g. 1.95.0")
            expectation = Expectation(rustc_version=args.expect_rustc.strip(),
                                      source="--expect-rustc")
        elif args.rustc_from_path:
            expectation = Expectation.from_rustc()
        elif args.like:
            expectation = Expectation.like(args.like)
        try:
            policy = Policy(expect=expectation, exports=tuple(args.exports),
                            imports=tuple(args.imports), resolve=not args.no_resolve,
                            unloading=not args.no_unload, require_relib=args.require_relib,
                            ignore=frozenset(args.ignore), downgrade=frozenset(args.relax))
        except ValueError as e:
            return _usage(args, out, str(e))
        report = check(args.path, policy)
    except RelibError as e:
        return _fail(args, out, e)
    status = EXIT_OK if report.ok else EXIT_FAILED
    text = (json.dumps(report.to_dict(), indent=2) + "\n" if args.json
            else render(report.to_dict()))
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        reader_gone(out)  # the verdict is still the exit status
    return status


def render(report: dict[str, Any]) -> str:
    """Human text of a report dict: a verdict line, then one aligned line per
    finding (errors first, as the report orders them)."""
    counts = report["counts"]
    verdict = "ok" if report["ok"] else "FAILED"
    parts = [f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}"
             for s in ("error", "warning", "info") if counts[s]]
    lines = [f"{report['path']}: {verdict}" + (f" ({', '.join(parts)})" if parts else "")]
    findings = report["findings"]
    if findings:
        sev_w = max(len(f["severity"]) for f in findings)
        code_w = max(len(f["code"]) for f in findings)
        for f in findings:
            lines.append(f"  {f['severity']:<{sev_w}}  {f['code']:<{code_w}}  {f['message']}")
    return "\n".join(lines) + "\n"


def _fail(args: argparse.Namespace, out: TextIO, error: Any) -> int:
    return _error(args, out, error.to_dict(), str(error))


def _usage(args: argparse.Namespace, out: TextIO, message: str) -> int:
    return _error(args, out, {"code": "usage", "message": message, "path": None}, message)


def _error(args: argparse.Namespace, out: TextIO, error: dict[str, Any], text: str) -> int:
    """``{"version": 1, "path": ..., "error": error}`` on ``out`` with ``--json``;
    ``text`` on stderr; the usage exit code."""
    if args.json:
        json.dump({"version": 1, "path": args.path, "error": error}, out, indent=2)
        out.write("\n")
    print(f"relib-pure check: {text}", file=sys.stderr)
    return EXIT_USAGE
