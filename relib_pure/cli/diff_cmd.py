"""``relib-pure diff OLD NEW [--json]``: what changed between two builds of a library.

Renders :func:`relib_pure.compat.diff.diff_libraries` over both files
inspected with their DWARF signatures; decides nothing. ``--json`` prints
``LibraryDiff.to_dict()`` (``schemas/diff.json``); on exit 2 it prints
``{"version": 1, "old": ..., "new": ..., "error": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, TextIO

from relib_pure.cli.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, reader_gone

__all__ = ["configure_parser", "execute", "render"]

logger = logging.getLogger(__name__)

EPILOG = ("exit status: 0 no change breaks a host built for OLD, 1 a change does, "
          "2 usage error or unreadable input")


def configure_parser(subparsers: Any) -> None:
    """Register the ``diff`` subcommand."""
    p = subparsers.add_parser(
        "diff", help="what changed between two builds, and whether it breaks the old host",
        description="Compare two builds of a library without loading them: exports and "
                    "imports added, removed or with changed signatures (DWARF, when both "
                    "builds have it), relib compilation info, NEEDED, symbol versions and "
                    "unload hazards.",
        epilog=EPILOG)
    p.add_argument("old", metavar="OLD", help="the build the host was made for")
    p.add_argument("new", metavar="NEW", help="the build to compare with it")
    p.add_argument("--no-signatures", dest="signatures", action="store_false",
                   help="do not read signatures from DWARF")
    p.add_argument("--json", action="store_true",
                   help="print the changes as JSON (schema: relib_pure/schemas/diff.json)")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Diff ``args.old`` against ``args.new``; returns the exit status."""
    from relib_pure.compat.diff import diff_libraries
    from relib_pure.errors import RelibError
    from relib_pure.inspection import inspect

    out = out or sys.stdout
    try:
        old = inspect(args.old, signatures=args.signatures)
        new = inspect(args.new, signatures=args.signatures)
    except RelibError as e:
        if args.json:
            json.dump({"version": 1, "old": args.old, "new": args.new, "error": e.to_dict()},
                      out, indent=2)
            out.write("\n")
        print(f"relib-pure diff: {e}", file=sys.stderr)
        return EXIT_USAGE
    result = diff_libraries(old, new)
    doc = result.to_dict()
    text = json.dumps(doc, indent=2) + "\n" if args.json else render(doc)
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        reader_gone(out)  # the verdict is still the exit status
    return EXIT_FAILED if result.breaking else EXIT_OK


def render(doc: dict[str, Any]) -> str:
    """Human text: a verdict line, then one aligned line per change (breaking first)."""
    counts = doc["counts"]
    verdict = "BREAKING for hosts built for OLD" if doc["breaking"] else \
        ("compatible" if doc["changes"] else "no changes")
    parts = [f"{counts[s]} {s}{'s' if counts[s] != 1 else ''}"
             for s in ("error", "warning", "info") if counts[s]]
    lines = [f"{doc['old']} -> {doc['new']}: {verdict}"
             + (f" ({', '.join(parts)})" if parts else "")]
    changes = doc["changes"]
    if changes:
        sev_w = max(len(c["severity"]) for c in changes)
        code_w = max(len(c["code"]) for c in changes)
        for c in changes:
            lines.append(f"  {c['severity']:<{sev_w}}  {c['code']:<{code_w}}  {c['message']}")
    return "\n".join(lines) + "\n"
