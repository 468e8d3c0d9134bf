"""What one reload attempt came to: :class:`ReloadEvent` and :class:`BuildResult`.

``ReloadEvent.to_dict()`` is one line of ``relib-pure watch --json``
(``schemas/watch.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from relib_pure.errors import RelibError
from relib_pure.runtime.report import UnloadReport

__all__ = ["Outcome", "OUTCOMES", "ReloadEvent", "BuildResult", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1

Outcome = Literal["loaded", "unchanged", "rejected", "rolled-back", "build-failed", "failed"]

#: every outcome, with what it means for the version serving calls
OUTCOMES: dict[str, str] = {
    "loaded": "the new version is serving",
    "unchanged": "the file was rewritten with identical bytes; nothing was reloaded",
    "rejected": "the new version was refused before the serving one was touched",
    "rolled-back": "the new version failed after the swap began; the last good one was "
                   "loaded again and is serving",
    "build-failed": "the build command failed; the serving version is unchanged",
    "failed": "the new version failed and the last good one could not be restored: "
              "nothing is serving",
}


@dataclass(frozen=True)
class BuildResult:
    """One run of the build command: its ``command``, ``returncode`` (``None`` when
    it could not be started or timed out), combined ``output`` and ``seconds``."""

    command: tuple[str, ...]
    returncode: int | None
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def to_dict(self) -> dict[str, Any]:
        return {"command": list(self.command), "returncode": self.returncode,
                "output": self.output, "seconds": round(self.seconds, 4)}


@dataclass(frozen=True)
class ReloadEvent:
    """One reload attempt.

    ``version`` numbers the candidate (each detected change gets the next
    number; the first load is 1); ``serving`` is the version serving calls
    after the event (``None`` only for ``failed``). ``reason`` says why a
    version was refused (a :class:`~relib_pure.errors.RelibError` with a
    stable ``code``). ``timings_ms``: ``detect`` (the change to the file
    being complete: from its last write, or from the first file event when
    that came first or a build ran), ``build``, ``copy``, ``validate``,
    ``trial``, ``unload``, ``load`` (load, main and ``on_load``), ``total``
    (the change to the new code having run). ``unload`` is the report of the
    version that was replaced (or of a candidate unloaded after failing).
    """

    version: int
    outcome: Outcome
    path: str
    serving: int | None
    sha256: str | None = None
    shadow: str | None = None
    reason: RelibError | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    unload: UnloadReport | None = None
    build: BuildResult | None = None
    main_result: Any = None
    leaked_shadows: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing went wrong (loaded or unchanged)."""
        return self.outcome in ("loaded", "unchanged")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (one line of ``schemas/watch.json``)."""
        main = self.main_result
        return {
            "version": SCHEMA_VERSION,
            "event": "reload",
            "candidate": self.version,
            "outcome": self.outcome,
            "path": self.path,
            "serving": self.serving,
            "sha256": self.sha256,
            "shadow": self.shadow,
            "reason": self.reason.to_dict() if self.reason is not None else None,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "unload": self.unload.to_dict() if self.unload is not None else None,
            "build": self.build.to_dict() if self.build is not None else None,
            "main_result": main if main is None or isinstance(main, (int, float, str, bool))
            else repr(main),
            "leaked_shadows": list(self.leaked_shadows),
        }

    def summary(self) -> str:
        """One human line (plus the reason when the version was refused)."""
        total = self.timings_ms.get("total")
        took = f" in {total:.1f} ms" if total is not None else ""
        line = f"v{self.version} {self.outcome}{took}"
        if self.outcome in ("loaded", "rolled-back") and self.unload is not None:
            verdict = "clean" if self.unload.clean else (
                "unloaded with leaks" if self.unload.unloaded else "STILL MAPPED")
            line += f"; previous version {verdict}"
        if self.serving is not None and self.outcome != "loaded":
            line += f"; v{self.serving} serving"
        if self.reason is not None:
            line += f"\n  reason [{self.reason.code}]: {self.reason.message}"
        return line
