"""``python -m relib_pure.reload.trial_child SPEC``: the child side of ``trial="child"``.

A module of its own: the package imports :mod:`relib_pure.reload.trial`, and
``-m`` of a module already imported would run it twice.
"""

from __future__ import annotations

import json
import sys

from relib_pure.reload.trial import child

if __name__ == "__main__":
    sys.exit(child(json.loads(sys.argv[1])))
