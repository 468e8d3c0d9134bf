"""``relib-pure`` entry point: one argparse parser, one module per subcommand.

Each subcommand module in this package (``<name>_cmd.py``) provides
``configure_parser(subparsers)`` (which calls ``set_defaults(func=execute)``)
and ``execute(args) -> int``. Exit codes:

- 0: success (library inspected, check passed, unload verified clean);
- 1: a check failed, or an unload was not clean;
- 2: usage error or unreadable input (a :class:`~relib_pure.errors.RelibError`
  from inspection or loading).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import TextIO

from relib_pure import __version__

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: subcommand modules, in the order shown by --help
COMMANDS = ("inspect", "check", "run", "probe")


def reader_gone(out: TextIO) -> None:
    """After a ``BrokenPipeError`` on ``out`` (the reader went away, ``| head``):
    point stdout at /dev/null so the interpreter's final flush does not raise again."""
    if out is sys.stdout:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relib-pure",
        description="Inspect, check, load and unload reloadable native libraries.",
        epilog="exit status: 0 ok, 1 check failed or unload not clean, 2 usage or unreadable input",
    )
    parser.add_argument("--version", action="version", version=f"relib-pure {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more to stderr (repeat for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"relib_pure.cli.{name}_cmd").configure_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Subparsers rule out parse_intermixed_args; so that `inspect a.so --json b.so`
    # works like the user expects, leftover plain words join a command's PATH list.
    args, extras = parser.parse_known_args(argv)
    if extras:
        if isinstance(getattr(args, "paths", None), list) and not any(
                e.startswith("-") for e in extras):
            args.paths.extend(extras)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="relib-pure: %(levelname)s: %(message)s",
                        stream=sys.stderr)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    result: int = func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
