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
import platform
import sys
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn, TextIO

from relib_pure import __version__

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: Ctrl-C (128 + SIGINT, as a shell reports a process the signal ended)
EXIT_INTERRUPTED = 130

#: subcommand modules, in the order shown by --help
COMMANDS = ("demo", "inspect", "check", "diff", "tree", "run", "watch", "codes", "probe")


def reader_gone(out: TextIO) -> None:
    """After a ``BrokenPipeError`` on ``out`` (the reader went away, ``| head``):
    point stdout at /dev/null so the interpreter's final flush does not raise again."""
    if out is sys.stdout:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


#: subcommands not offered in help or in argparse's "invalid choice" message
HIDDEN_COMMANDS = frozenset({"probe"})

#: exit-status epilog of each subcommand that does not set its own
EPILOGS = {
    "inspect": "exit status: 0 every library inspected, 2 usage error or unreadable input",
    "run": "exit status: 0 unload clean, 1 a check failed or the unload was not clean "
           "(with --cycles: a cycle was not clean or a figure grew), "
           "2 usage error or unreadable input",
}
DEFAULT_EPILOG = "exit status: 0 ok, 1 check failed or unload not clean, 2 usage or unreadable input"


def version_text() -> str:
    """What ``--version`` prints: the version, where the package is, which Python."""
    import relib_pure

    location = os.path.dirname(os.path.abspath(relib_pure.__file__ or "."))
    return (f"relib-pure {__version__} from {location}\n"
            f"Python {platform.python_version()} ({sys.executable})")


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show version, package location and Python, then exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        print(version_text())
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """Usage errors as a JSON document too when the command line asked for ``--json``."""

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if self.json_errors:
            import json

            print(json.dumps({"version": 1, "path": None,
                              "error": {"code": "usage", "message": message, "path": None}},
                             indent=2))
        super().error(message)


class _ShownChoices(Mapping[str, "_Parser"]):
    """The subparser map minus hidden commands when iterated (argparse lists the
    choices in its typo message), complete for lookup."""

    def __init__(self, parsers: dict[str, _Parser]) -> None:
        self._parsers = parsers

    def __getitem__(self, key: str) -> _Parser:
        return self._parsers[key]

    def __contains__(self, key: object) -> bool:
        return key in self._parsers

    def __iter__(self) -> Iterator[str]:
        return (k for k in self._parsers if k not in HIDDEN_COMMANDS)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _plain(text: str | None) -> str | None:
    """Docstring markup (reST backticks) does not belong in terminal help."""
    if text is None:
        return None
    return text.replace("``", "").replace("`", "'")


def build_parser(json_errors: bool = False) -> argparse.ArgumentParser:
    """The whole command line; ``json_errors`` makes usage errors print JSON too."""
    parser = _Parser(
        prog="relib-pure",
        description="Inspect, check, load and unload reloadable native libraries.",
        epilog=DEFAULT_EPILOG,
    )
    parser.json_errors = json_errors
    parser.add_argument("-V", "--version", action=_VersionAction)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more to stderr (repeat for debug)")
    parser.add_argument("-q", "--quiet", action="count", default=0,
                        help="log only errors to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"relib_pure.cli.{name}_cmd").configure_parser(sub)
    parsers: dict[str, _Parser] = sub.choices
    for name, p in parsers.items():
        p.json_errors = json_errors
        # separate dests: a subparser's defaults would overwrite the top-level count
        p.add_argument("-v", "--verbose", dest="sub_verbose", action="count", default=0,
                       help="log more to stderr (repeat for debug)")
        p.add_argument("-q", "--quiet", dest="sub_quiet", action="count", default=0,
                       help="log only errors to stderr")
        p.description = _plain(p.description)
        p.epilog = p.epilog or EPILOGS.get(name, DEFAULT_EPILOG)
        for action in p._actions:
            action.help = _plain(action.help)
    sub.choices = _ShownChoices(parsers)  # type: ignore[assignment]
    return parser


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    wants_json = "--json" in args_list or "--format=json" in args_list or any(
        a == "--format" and b == "json" for a, b in zip(args_list, args_list[1:]))
    parser = build_parser(json_errors=wants_json)
    # Subparsers rule out parse_intermixed_args; so that `inspect a.so --json b.so`
    # works like the user expects, leftover plain words join a command's PATH list.
    args, extras = parser.parse_known_args(args_list)
    if extras:
        if isinstance(getattr(args, "paths", None), list) and not any(
                e.startswith("-") for e in extras):
            args.paths.extend(extras)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
    verbose = args.verbose + getattr(args, "sub_verbose", 0)
    quiet = args.quiet + getattr(args, "sub_quiet", 0)
    level = logging.ERROR if quiet and not verbose else logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="relib-pure: %(levelname)s: %(message)s",
                        stream=sys.stderr)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        result: int = func(args)
    except KeyboardInterrupt:
        # the command's own cleanup (closing files, stopping a hash) ran on the way out
        print("relib-pure: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return result


if __name__ == "__main__":
    sys.exit(main())
