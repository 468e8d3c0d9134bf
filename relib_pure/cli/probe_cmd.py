"""``relib-pure probe PATH``: the child side of :func:`relib_pure.probe` (hidden from help).

Prints one JSON line per stage reached, then ``{"result": ...}``; a crash
leaves the last stage line as the record of how far it got.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["configure_parser", "execute"]


def configure_parser(subparsers: Any) -> None:
    from relib_pure.cli.run_cmd import add_cycle_arguments

    # no help= keeps it out of the command list; it is an internal protocol
    parser = subparsers.add_parser("probe", description=__doc__.splitlines()[0])
    add_cycle_arguments(parser)
    parser.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from relib_pure.runtime.probe import child_main

    return child_main(args.path, call=args.call, restype=args.restype, times=args.times,
                      owner=args.owner, check=args.check, lazy=args.lazy,
                      deepbind=args.deepbind, protocol=args.protocol, args=args.args)
