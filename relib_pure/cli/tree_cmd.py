"""``relib-pure tree PATH...``: the NEEDED closure of libraries, like ``lddtree``.

Each dependency is shown where the dynamic loader would find it for a fresh
process (RPATH, ``LD_LIBRARY_PATH``, RUNPATH, ``ld.so.cache``, system
directories), expanded under the first library that needs it; later
references say ``(see above)``. ``--json`` prints ``{"version": 1, "trees":
[...], "errors": [...]}`` (``schemas/tree.json``). Exit status: 0 every
dependency found, 1 some dependency not found, 2 usage error or unreadable
input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

from relib_pure.cli.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, reader_gone
from relib_pure.inspection.targets import collect

if TYPE_CHECKING:
    from relib_pure.compat.tree import TreeNode

__all__ = ["configure_parser", "execute"]

logger = logging.getLogger(__name__)


def configure_parser(subparsers: Any) -> None:
    """Register the ``tree`` subcommand."""
    p = subparsers.add_parser(
        "tree", help="show the dependency tree of libraries (like lddtree)",
        description=__doc__.splitlines()[0],
        epilog="exit status: 0 every dependency found, 1 a dependency not found, "
               "2 usage or unreadable input")
    p.add_argument("paths", nargs="*", metavar="PATH", help="libraries or .whl files")
    p.add_argument("--json", action="store_true", help="print JSON (schemas/tree.json)")
    p.set_defaults(func=execute)


def _missing(node: TreeNode) -> int:
    return (node.path is None) + sum(_missing(c) for c in node.children)


def execute(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the trees; returns the exit status."""
    from relib_pure.compat.tree import dependency_tree, render_tree
    from relib_pure.errors import RelibError
    from relib_pure.inspection import inspect
    out = out or sys.stdout
    if not args.paths:
        message = "the following arguments are required: PATH"
        if args.json:
            out.write(json.dumps({"version": 1, "trees": [], "errors": [
                {"code": "usage", "message": message, "path": None}]}) + "\n")
        print(f"relib-pure tree: {message}", file=sys.stderr)
        return EXIT_USAGE
    with collect(args.paths) as found:
        errors = [e.to_dict() for e in found.errors]
        trees: list[dict[str, Any]] = []
        texts: list[str] = []
        missing = 0
        for target in found.targets:
            try:
                root = dependency_tree(inspect(target.path))
            except RelibError as e:
                errors.append(json.loads(found.rename(json.dumps(e.to_dict()))))
                continue
            missing += _missing(root)
            if args.json:
                tree = json.loads(found.rename_json(json.dumps(root.to_dict())))
                tree["path"] = target.display
                trees.append(tree)
            else:
                texts.append(found.rename(render_tree(root)))
        notes = [f"{s.display}: skipped ({s.reason})" for s in found.skipped]
    try:
        if args.json:
            out.write(json.dumps({"version": 1, "trees": trees, "errors": errors},
                                 indent=2) + "\n")
        else:
            out.write("".join(texts) + "".join(n + "\n" for n in notes))
        out.flush()
    except BrokenPipeError:
        reader_gone(out)
    if not args.json:
        for error in errors:
            where = f"{error['path']}: " if error.get("path") else ""
            print(f"relib-pure tree: {where}{error['message']} [{error['code']}]",
                  file=sys.stderr)
    return EXIT_USAGE if errors else EXIT_FAILED if missing else EXIT_OK
