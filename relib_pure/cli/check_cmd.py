"""``relib-pure check PATH...``: compatibility findings for libraries.

PATHs are library files, ``.whl`` files (their native members are checked)
and, with ``-r``, directories; several are checked in parallel (``--jobs``).
Exit status: 0 no error findings, 1 at least one error finding (with
``--strict``: or warning), 2 usage error or unreadable input (a library, the
``--like`` file, or a rustc that cannot be run). ``--json`` with one library
file prints ``CheckReport.to_dict()`` (``schemas/check.json``), on exit 2
``{"version": 1, "path": ..., "error": {...}}``; with several libraries, a
wheel, a directory or ``--manylinux`` it prints one batch document
``{"version": 1, "ok", "counts", "reports", "errors", "skipped", "platforms"}``.
``--format sarif`` prints a SARIF 2.1.0 log, ``--format github`` workflow
annotations.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from relib_pure.cli.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, reader_gone
from relib_pure.cli.parallel import default_jobs, run_ordered
from relib_pure.inspection.targets import collect

if TYPE_CHECKING:
    from relib_pure.compat import Policy
    from relib_pure.compat.manylinux import Requirements
    from relib_pure.inspection.targets import Collection
    from relib_pure.interface import Interface

logger = logging.getLogger(__name__)

FORMATS = ("text", "json", "sarif", "github")


def configure_parser(subparsers: Any) -> None:
    """Register the ``check`` subcommand."""
    p = subparsers.add_parser(
        "check", help="check that libraries are compatible and loadable here",
        description="Check libraries against this interpreter and an expectation, without "
                    "loading them.",
        epilog="exit status: 0 no error findings, 1 error findings (--strict: or warnings), "
               "2 usage or unreadable input, 130 interrupted (Ctrl-C)")
    # optional here so that `--exports A B lib.so` (path swallowed) can be repaired
    p.add_argument("paths", metavar="PATH", nargs="*",
                   help="libraries, .whl files, or directories with -r")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="check every library below directory PATHs")
    p.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                   help="check N libraries at a time (default: every core)")
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
    p.add_argument("--rust-interface", action="append", default=[], metavar="FILE:TRAIT",
                   help="declare the interface from a Rust trait (relib's shared crate, e.g. "
                        "src/exports.rs:Exports); with a debug build its signatures are "
                        "compared with the DWARF (repeatable)")
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
    p.add_argument("--python", metavar="VERSION|PATH",
                   help="check Python extension modules for this interpreter (e.g. 3.13; "
                        "default: the cpython-3XY tag of the file name, else this one)")
    p.add_argument("--strict", action="store_true",
                   help="warnings fail too (reported as errors; --relax still wins)")
    p.add_argument("--manylinux", action="store_true",
                   help="summarise the highest GLIBC version and manylinux tag per PATH "
                        "(like auditwheel show)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="output: text (default), json, sarif (SARIF 2.1.0), github "
                        "(workflow annotations)")
    p.add_argument("--json", action="store_true", help="the same as --format json")
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


@dataclass(frozen=True)
class _Result:
    """One library's outcome, as a worker sends it back."""

    path: str
    report: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    requirements: Requirements | None = None


def _check_one(task: tuple[str, Policy, bool]) -> _Result:
    """Worker: inspect, check and (with the manylinux summary) read the
    platform requirements of one library."""
    from relib_pure.compat import check
    from relib_pure.errors import RelibError
    from relib_pure.inspection import inspect

    path, policy, platform = task
    try:
        info = inspect(path)
        report = check(info, policy)
    except RelibError as e:
        return _Result(path, error=e.to_dict())
    reqs = None
    if platform:
        from relib_pure.compat.manylinux import requirements

        reqs = requirements(info)
    return _Result(path, report=report.to_dict(), requirements=reqs)


def execute(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the checks and render them; returns the exit status."""
    from relib_pure.errors import RelibError

    out = out or sys.stdout
    args.format = "json" if args.json else (args.format or "text")
    args.json = args.format == "json"
    args.path = args.paths[0] if len(args.paths) == 1 else None
    if not args.paths:
        last = getattr(args, "last_name_list", None)
        names: list[str] = getattr(args, last) if last else []
        if not names:
            return _usage(args, out, "the following arguments are required: PATH")
        # `--exports A B lib.so`: the option took the path as one more name
        args.paths = [names.pop()]
        args.path = args.paths[0]
    if args.jobs is not None and args.jobs < 1:
        return _usage(args, out, "--jobs must be at least 1")
    try:
        policy = _policy(args)
    except RelibError as e:
        return _fail(args, out, e)
    except ValueError as e:
        return _usage(args, out, str(e))
    with collect(args.paths, recursive=args.recursive) as found:
        single = (len(args.paths) == 1 and not args.recursive and not args.manylinux
                  and not found.wheel_dirs and not found.skipped
                  and args.format in ("text", "json"))
        if single and found.errors:
            return _fail(args, out, found.errors[0])
        if single:
            return _single(args, out, policy)
        return _batch(args, out, policy, found)


def _policy(args: argparse.Namespace) -> Policy:
    from relib_pure.compat import Expectation, Policy

    expectation = None
    if args.expect_rustc is not None:
        if not args.expect_rustc.strip():
            # an empty version would silently compare nothing
            raise ValueError("--expect-rustc needs a version, e.g. 1.95.0")
        expectation = Expectation(rustc_version=args.expect_rustc.strip(),
                                  source="--expect-rustc")
    elif args.rustc_from_path:
        expectation = Expectation.from_rustc()
    elif args.like:
        expectation = Expectation.like(args.like)
    return Policy(expect=expectation, interface=_rust_interface(args.rust_interface),
                  exports=tuple(args.exports),
                  imports=tuple(args.imports), resolve=not args.no_resolve,
                  unloading=not args.no_unload, require_relib=args.require_relib,
                  python=args.python,
                  ignore=frozenset(args.ignore), downgrade=frozenset(args.relax),
                  escalate=_strict_codes(args.relax) if args.strict else frozenset())


def _rust_interface(specs: list[str]) -> Interface | None:
    """``FILE:TRAIT`` items merged into one interface (``None`` without any)."""
    from relib_pure.interface import Interface

    merged: Interface | None = None
    for spec in specs:
        path, sep, trait = spec.rpartition(":")
        if not sep or not path or not trait.strip():
            raise ValueError(f"--rust-interface wants FILE:TRAIT, got {spec!r}")
        one = Interface.from_rust(path, trait.strip())
        merged = one if merged is None else merged.merge(one)
    return merged


def _strict_codes(relaxed: list[str]) -> frozenset[str]:
    """Every finding code but the ``--relax``ed ones: under ``--strict`` a
    relaxed code stays a warning that does not fail."""
    from relib_pure.compat import FINDING_CODES

    names = {r[:-2] if r.endswith(".*") else r for r in relaxed}
    return frozenset(c for c in FINDING_CODES
                     if c not in names and c.split(".", 1)[0] not in names)


def _single(args: argparse.Namespace, out: TextIO, policy: Policy) -> int:
    """One library file: the report itself (the shape scripts have relied on)."""
    from relib_pure.compat import check
    from relib_pure.errors import RelibError

    try:
        report = check(args.path, policy)
    except RelibError as e:
        return _fail(args, out, e)
    status = EXIT_OK if report.ok else EXIT_FAILED
    text = (json.dumps(report.to_dict(), indent=2) + "\n" if args.json
            else render(report.to_dict()))
    _write(out, text)
    return status


def _write(out: TextIO, text: str) -> None:
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        reader_gone(out)  # the verdict is still the exit status


def _renamed(value: Any, found: Collection) -> Any:
    """``value`` with wheel extraction paths spelled ``x.whl!member``."""
    if isinstance(value, str):
        return found.rename(value)
    if isinstance(value, list):
        return [_renamed(v, found) for v in value]
    if isinstance(value, dict):
        return {k: _renamed(v, found) for k, v in value.items()}
    return value


def _batch(args: argparse.Namespace, out: TextIO, policy: Policy, found: Collection) -> int:
    targets = found.targets
    tasks = [(t.path, policy, bool(args.manylinux)) for t in targets]
    jobs = args.jobs or default_jobs()
    reports: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = [e.to_dict() for e in found.errors]
    groups: dict[str, list[Requirements]] = {}
    outcomes = []
    from relib_pure.cli.annotations import Outcome

    for e in errors:
        outcomes.append(Outcome(e["path"] or "", e["path"] or "", error=e))
    text = args.format == "text"
    for target, result in zip(targets, run_ordered(_check_one, tasks, jobs)):
        file = target.group if target.display != target.path else target.path
        if result.error is not None:
            error = _renamed(result.error, found)
            errors.append(error)
            outcomes.append(Outcome(target.display, file, error=error))
            if text:
                print(f"relib-pure check: {error['path']}: {error['message']} "
                      f"[{error['code']}]", file=sys.stderr)
            continue
        assert result.report is not None
        report = _renamed(result.report, found)
        report["path"] = target.display
        reports.append(report)
        outcomes.append(Outcome(target.display, file, report=report))
        if result.requirements is not None:
            groups.setdefault(target.group, []).append(result.requirements)
        if text:
            _write(out, render(report))
    for failure in found.errors:
        if text:
            print(f"relib-pure check: {failure}", file=sys.stderr)
    platforms = []
    if args.manylinux:
        from relib_pure.compat.manylinux import summarize

        platforms = [_renamed(summarize(group, reqs).to_dict(), found)
                     for group, reqs in groups.items()]
    failed = sum(1 for r in reports if not r["ok"])
    status = EXIT_USAGE if errors else EXIT_FAILED if failed else EXIT_OK
    if args.format == "json":
        doc = {"version": 1, "ok": status == EXIT_OK,
               "counts": {"libraries": len(reports), "failed": failed,
                          "unreadable": len(errors), "skipped": len(found.skipped)},
               "reports": reports, "errors": errors,
               "skipped": [s.to_dict() for s in found.skipped], "platforms": platforms}
        _write(out, json.dumps(doc, indent=2) + "\n")
    elif args.format == "sarif":
        from relib_pure import __version__
        from relib_pure.cli.annotations import to_sarif
        from relib_pure.compat import FINDING_CODES
        from relib_pure.errors import ERROR_CODES

        log = to_sarif(outcomes, {**ERROR_CODES, **FINDING_CODES}, __version__)
        _write(out, json.dumps(log, indent=2) + "\n")
    elif args.format == "github":
        from relib_pure.cli.annotations import github_lines

        lines = github_lines(outcomes)
        _write(out, "".join(line + "\n" for line in lines))
    else:
        tail = [f"{s.display}: skipped ({s.reason})" for s in found.skipped]
        tail += [_platform_line(p) for p in platforms]
        tail.append(f"{len(reports)} librar{'y' if len(reports) == 1 else 'ies'} checked: "
                    f"{len(reports) - failed} ok, {failed} failed"
                    + (f", {len(errors)} unreadable" if errors else "")
                    + (f", {len(found.skipped)} skipped" if found.skipped else ""))
        _write(out, "".join(line + "\n" for line in tail))
    return status


def _platform_line(p: dict[str, Any]) -> str:
    from relib_pure.compat.manylinux import PlatformSummary

    summary = PlatformSummary(p["group"], p["libraries"], p["tag"],
                              {f: (h["version"], h["required_by"])
                               for f, h in p["highest"].items()},
                              tuple((e["name"], e["required_by"]) for e in p["external"]))
    return summary.sentence()


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
