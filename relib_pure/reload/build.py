"""Running the build command a source change asks for."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Sequence

from relib_pure.reload.events import BuildResult

logger = logging.getLogger(__name__)

__all__ = ["run_build"]


def run_build(command: Sequence[str], *, cwd: str | None = None,
              timeout: float | None = None) -> BuildResult:
    """Run ``command`` (no shell), its stdout and stderr combined; never raises for a
    failing, missing or timed-out command: the result says so."""
    cmd = tuple(command)
    t0 = time.perf_counter()
    logger.info("build: %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True, errors="replace",
                              timeout=timeout)
        code: int | None = proc.returncode
        output = proc.stdout
    except subprocess.TimeoutExpired as e:
        code = None
        raw = e.stdout or b""
        output = (raw.decode(errors="replace") if isinstance(raw, bytes) else raw) \
            + f"\n(build timed out after {timeout} s)"
    except OSError as e:
        code = None
        output = f"cannot run {cmd[0]!r}: {e.strerror or e}"
    result = BuildResult(cmd, code, output, time.perf_counter() - t0)
    for line in output.splitlines():
        logger.info("build| %s", line)
    if not result.ok:
        logger.warning("build failed (%s)", "exit status %s" % code if code is not None
                       else "not run to the end")
    return result
