"""``python -m relib_pure``: the CLI (also used by :func:`relib_pure.probe` for child processes)."""

import sys

from relib_pure.cli.main import main

sys.exit(main())
