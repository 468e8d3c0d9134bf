"""One load -> call -> unload -> verify cycle, in this process or in a child.

:func:`run_cycle` does the cycle here. :func:`probe` runs it in a child
process of the same interpreter (``python -m relib_pure probe ...``), so a
segfault or abort in native code becomes a :class:`ProbeReport` (signal, exit
status, stderr, last stage reached) instead of killing the caller. The child
prints one JSON line per stage and the result last.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import os
import signal as signal_mod
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from relib_pure.errors import RelibError
from relib_pure.runtime.callspec import RETURN_TYPES, CallSpec, parse_call
from relib_pure.runtime.report import UnloadReport

logger = logging.getLogger(__name__)

__all__ = ["RESTYPES", "RunResult", "ProbeReport", "run_cycle", "probe", "SCHEMA_VERSION",
           "native_stdout_to_stderr", "signal_name", "child_env", "cycle_flags"]

SCHEMA_VERSION = 1

#: return types a ``--call`` may declare (``--restype``; see
#: :mod:`relib_pure.runtime.callspec` for arguments)
RESTYPES: dict[str, Any] = dict(RETURN_TYPES)

STAGES = ("start", "validate", "load", "main", "call", "unload", "done")
# a failed compatibility check is a verdict (1), not unreadable input (2)
_USAGE_PREFIXES = ("inspect.", "load.", "compat.expectation")


@dataclass(frozen=True)
class RunResult:
    """Outcome of one cycle: ``stage`` is the last stage reached (``done`` when
    the cycle completed); ``call`` and ``unload`` are JSON dicts (``unload`` is
    :meth:`UnloadReport.to_dict`); ``error`` is :meth:`RelibError.to_dict`."""

    path: str
    stage: str
    call: dict[str, Any] | None = None
    unload: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    #: a relib module's main, called right after load as relib's host does:
    #: ``{"symbol", "result"}`` (``result`` is ``None`` for ``()``)
    main: dict[str, Any] | None = None

    @property
    def clean(self) -> bool:
        return self.error is None and self.unload is not None and bool(self.unload["clean"])

    @property
    def exit_code(self) -> int:
        """0 clean unload, 1 not clean, 2 the library could not be read or loaded."""
        if self.clean:
            return 0
        if self.error is not None and str(self.error["code"]).startswith(_USAGE_PREFIXES):
            return 2
        return 1

    def to_dict(self) -> dict[str, Any]:
        return {"version": SCHEMA_VERSION, "path": self.path, "isolated": False,
                "stage": self.stage, "clean": self.clean, "main": self.main, "call": self.call,
                "unload": self.unload, "error": self.error, "process": None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        return cls(data["path"], data["stage"], data.get("call"), data.get("unload"),
                   data.get("error"), data.get("main"))


@dataclass(frozen=True)
class ProbeReport:
    """What a child process running :func:`run_cycle` came to.

    ``signal``/``signal_name`` are set when the child was killed by a signal
    (e.g. 11/``SIGSEGV``), ``exit_status`` when it exited; ``stage`` is the
    last stage it reported; ``result`` is its :class:`RunResult` when it got
    that far; ``timed_out`` when it was killed after ``timeout``.
    """

    path: str
    exit_status: int | None
    signal: int | None
    signal_name: str | None
    stderr: str
    stage: str
    result: RunResult | None
    timed_out: bool = False

    @property
    def crashed(self) -> bool:
        return self.signal is not None or self.timed_out or self.result is None

    @property
    def clean(self) -> bool:
        return not self.crashed and self.result is not None and self.result.clean

    @property
    def exit_code(self) -> int:
        if self.crashed or self.result is None:
            return 1
        return self.result.exit_code

    def to_dict(self) -> dict[str, Any]:
        base: dict[str, Any] = self.result.to_dict() if self.result is not None else {
            "version": SCHEMA_VERSION, "path": self.path, "stage": self.stage, "main": None,
            "call": None, "unload": None, "error": None}
        base.update(isolated=True, stage=self.stage, clean=self.clean, process={
            "exit_status": self.exit_status, "signal": self.signal,
            "signal_name": self.signal_name, "timed_out": self.timed_out,
            "stderr": self.stderr})
        return base


def run_cycle(path: str | os.PathLike[str], *, call: str | None = None,
              restype: str | None = None, times: int = 1, owner: str = "thread",
              policy: Any = None, check: bool = True, lazy: bool = False,
              deepbind: bool = False, protocol: bool = True,
              on_stage: Callable[[str], None] | None = None,
              args: Sequence[str] = ()) -> RunResult:
    """Load ``path``, call ``call`` ``times`` times, unload and verify, here.

    ``call`` is a :func:`~relib_pure.runtime.callspec.parse_call` spelling
    (``"plain_add(2, 3)"``, ``"plain_add:int(int,int)"`` with ``args``
    ``["2", "3"]``, or a bare name); ``restype`` declares the return type.
    Without declared types the call is ``int f(void)`` (or ``int f(<the
    literals' types>)``) and the result's ``call.declared`` is false.

    ``protocol`` picks the driver as :func:`relib_pure.load` does (relib's for
    relib modules built with unloading); ``False`` treats every library as
    plain. A relib module's ``main`` is called right after loading, as relib's
    own host does (its panic is the result's error, and the module is still
    unloaded); ``call="main"`` on a relib module calls it ``times`` times instead.
    Errors the host raises on purpose become the result's ``error``; anything
    else propagates.
    """
    from relib_pure.runtime.module import load_validated, protocol_driver
    from relib_pure.runtime.validate import validate

    _check_arguments(restype, times, owner)
    spec: CallSpec | None = parse_call(call, args, restype) if call is not None else None
    shown = os.fspath(path)
    stage = "start"
    call_info: dict[str, Any] | None = None
    main_info: dict[str, Any] | None = None
    report = None

    def reach(name: str) -> None:
        nonlocal stage
        stage = name
        if on_stage is not None:
            on_stage(name)

    try:
        reach("validate")
        validated = validate(path, policy=policy, check=check)
        reach("load")
        driver = protocol_driver(validated) if protocol else None
        module = load_validated(validated, owner=owner,  # type: ignore[arg-type]
                                lazy=lazy, deepbind=deepbind, driver=driver)
        try:
            # relib protocol drivers bind the module's main (``__relib__main``)
            main = getattr(module.driver, "main", None)
            if main is not None and (spec is None or spec.symbol != "main"):
                reach("main")
                main_info = {"symbol": main.symbol, "result": None}
                main_info["result"] = _json_value(module.run_on_owner(main))
            if spec is not None:
                values = spec.call_args()
                fn: Callable[..., Any]
                if main is not None and spec.symbol == "main":
                    fn = lambda *_: module.run_on_owner(main)  # noqa: E731
                else:
                    res, argtypes = spec.ctypes_signature()
                    fn = module.function(spec.symbol, res, argtypes)
                reach("call")
                last = None
                for _ in range(times):
                    last = fn(*values)
                described = spec.to_dict()
                call_info = {"symbol": spec.symbol, "restype": spec.restype, "times": times,
                             "last_result": _json_value(last),
                             **{k: described[k] for k in ("argtypes", "args", "declared",
                                                          "signature")}}
        finally:
            reach("unload")
            report = module.unload()
        reach("done")
        return RunResult(shown, stage, call_info, report.to_dict(), None, main_info)
    except RelibError as e:
        # a failed call still unloads (finally above): keep that report
        carried = getattr(e, "report", None)  # compat errors carry a CheckReport
        report_obj = carried if isinstance(carried, UnloadReport) else report
        unload = report_obj.to_dict() if report_obj is not None else None
        return RunResult(shown, stage, call_info, unload, e.to_dict(), main_info)


def _json_value(value: Any) -> Any:
    """``value`` as JSON can carry it: a NaN or infinite double becomes its name
    (``"nan"``, ``"inf"``, ``"-inf"``), which strict JSON parsers would reject as a number."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, bytes):  # a char * result
        return value.decode("utf-8", "replace")
    return value


def _check_arguments(restype: str | None, times: int, owner: str) -> None:
    # a caller's mistake, not the library's: under probe() the child's argparse
    # would otherwise turn it into a "crash" report
    if restype is not None and restype not in RESTYPES:
        raise ValueError(f"restype must be one of {sorted(RESTYPES)}")
    if owner not in ("thread", "caller"):
        raise ValueError(f"owner must be 'thread' or 'caller', not {owner!r}")
    if isinstance(times, bool) or not isinstance(times, int) or times < 1:
        raise ValueError(f"times must be an integer of at least 1, not {times!r}")


def signal_name(num: int) -> str:
    """``SIGSEGV`` for 11: how a child's death by a signal is reported."""
    try:
        return signal_mod.Signals(num).name
    except ValueError:
        return f"signal {num}"


def child_env() -> dict[str, str]:
    """This environment for a child interpreter that must import this very
    package, wherever it was imported from (a checkout, not the installed one)."""
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
    return env


def cycle_flags(*, call: str | None, restype: str | None, times: int, owner: str,
                check: bool, lazy: bool, deepbind: bool, protocol: bool,
                args: Sequence[str] = ()) -> list[str]:
    """The command-line flags (``probe`` and ``run`` share them) of one cycle's options."""
    flags = ["--times", str(times), "--owner", owner]
    if restype is not None:
        flags.append(f"--restype={restype}")
    if call is not None:
        flags.append(f"--call={call}")
        flags += [f"--arg={a}" for a in args]
    if not check:
        flags.append("--no-check")
    if lazy:
        flags.append("--lazy")
    if deepbind:
        flags.append("--deepbind")
    if not protocol:
        flags.append("--plain")
    return flags


def probe(path: str | os.PathLike[str], *, call: str | None = None,
          restype: str | None = None, times: int = 1, owner: str = "thread",
          check: bool = True, lazy: bool = False, deepbind: bool = False,
          protocol: bool = True, timeout: float = 60.0, args: Sequence[str] = ()) -> ProbeReport:
    """Run :func:`run_cycle` in a child ``python -m relib_pure probe`` and report.

    The child is the same interpreter with ``faulthandler`` on, so a crash
    leaves a Python traceback in ``stderr``.
    """
    _check_arguments(restype, times, owner)
    if call is not None:
        parse_call(call, args, restype)  # the caller's mistake, said here, not as a crash
    shown = os.fspath(path)
    cmd = [sys.executable, "-X", "faulthandler", "-m", "relib_pure", "probe",
           *cycle_flags(call=call, restype=restype, times=times, owner=owner, check=check,
                        lazy=lazy, deepbind=deepbind, protocol=protocol, args=args),
           "--", shown]  # a path may begin with "-"
    env = child_env()
    timed_out = False
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        returncode: int | None = proc.returncode
        out, err = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        timed_out = True
        returncode = None
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
    stage, result = "start", None
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if "stage" in msg and len(msg) == 1:
            stage = msg["stage"]
        elif "result" in msg:
            result = RunResult.from_dict(msg["result"])
            stage = result.stage
    sig = -returncode if returncode is not None and returncode < 0 else None
    status = returncode if returncode is not None and returncode >= 0 else None
    return ProbeReport(shown, status, sig, signal_name(sig) if sig else None, err, stage,
                       result, timed_out)


def child_main(path: str, *, call: str | None, restype: str | None, times: int, owner: str,
               check: bool, lazy: bool = False, deepbind: bool = False,
               protocol: bool = True, args: Sequence[str] = ()) -> int:
    """The child side of :func:`probe`: stage lines then the result, on stdout."""
    with native_stdout_to_stderr() as out:
        def emit(obj: dict[str, Any]) -> None:
            # unbuffered: a crash right after must not lose the line
            os.write(out, (json.dumps(obj) + "\n").encode())

        result = run_cycle(path, call=call, restype=restype, times=times, owner=owner,
                           check=check, lazy=lazy, deepbind=deepbind, protocol=protocol,
                           on_stage=lambda s: emit({"stage": s}), args=args)
        emit({"result": result.to_dict()})
    return result.exit_code


_fflush = ctypes.CDLL(None).fflush
_fflush.restype = ctypes.c_int
_fflush.argtypes = (ctypes.c_void_p,)


@contextlib.contextmanager
def native_stdout_to_stderr() -> Iterator[int]:
    """Point descriptor 1 at stderr while native code runs; yields the real stdout.

    Libraries print to descriptor 1 behind Python's back, which would break
    the JSON a command prints there. C stdio keeps what a library printed in
    its buffer (stdout is fully buffered when it is not a terminal) until
    someone flushes it, at the latest ``exit()``, when descriptor 1 is the
    real stdout again: so it is flushed here, while it still goes to stderr.
    """
    sys.stdout.flush()
    _fflush(None)
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield saved
    finally:
        sys.stdout.flush()
        _fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
