"""``trial="child"``: load a new version and run its main in a child process first.

A crash in the new code (a segfault in ``main``, an abort) then costs a child
process and rejects the version, instead of killing the host. The child is a
fresh interpreter (``python -m relib_pure.reload.trial_child SPEC``): it loads the
shadow copy the same way the reloader will, runs ``main`` (relib) or
``init`` (plain), unloads, and prints one JSON line. The host's Python
implementations of relib imports cannot cross a process boundary: in the
trial every import answers with a zero value of its return type.
"""

from __future__ import annotations

import importlib
import json
import os
import signal as signal_mod
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from relib_pure.errors import ReloadError

__all__ = ["TrialResult", "describe_spec", "run_trial"]


@dataclass(frozen=True)
class TrialResult:
    """What the child came to: ``ok``, the last ``stage`` it reached, its ``error``
    (``{"code", "message", "path"}``), ``signal_name`` when it was killed by a
    signal, and the tail of its stderr."""

    ok: bool
    stage: str
    error: dict[str, Any] | None
    signal_name: str | None
    stderr: str

    def reason(self) -> str:
        if self.signal_name is not None:
            why = f"the trial child was killed by {self.signal_name} during {self.stage}"
        elif self.error is not None:
            why = f"{self.stage} failed in the trial child: {self.error['message']}"
        else:
            why = f"the trial child ended without a result during {self.stage}"
        # what the library said, not the traceback faulthandler adds after it
        said = self.stderr.split("Fatal Python error:", 1)[0]
        tail = [ln.strip() for ln in said.splitlines() if ln.strip()][-3:]
        return why + ("; stderr: " + " | ".join(tail) if tail else "")


def _type_ref(t: Any) -> Any:
    """A name the child can import ``t`` by (ctypes types, relib_pure layouts...)."""
    if t is None:
        return None
    target = getattr(t, "_type_", None)
    if isinstance(target, type) and t.__name__.startswith("LP_"):
        return {"pointer": _type_ref(target)}
    ref = f"{t.__module__}:{t.__qualname__}"
    if _resolve(ref) is not t:
        raise ReloadError(f"the trial child cannot name the type {t!r} (define it in an "
                          "importable module)", code="reload.trial-unsupported")
    return ref


def _resolve(ref: Any) -> Any:
    if ref is None:
        return None
    if isinstance(ref, dict):
        import ctypes

        return ctypes.POINTER(_resolve(ref["pointer"]))
    module, _, qualname = str(ref).partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj


def describe_spec(spec: Any) -> dict[str, Any]:
    """The JSON the child loads a version by (:class:`~relib_pure.reload.version.LoadSpec`)."""
    imports = []
    if spec.relib:
        from relib_pure.relib import _import_specs

        specs, _impls = _import_specs(spec.import_types, spec.interface, spec.imports or {})
        imports = [{"name": s.name, "trait": s.trait, "restype": _type_ref(s.restype),
                    "argtypes": [_type_ref(a) for a in s.argtypes]} for s in specs]
    return {"relib": spec.relib, "main": spec.main, "main_restype": _type_ref(spec.main_restype),
            "init": spec.init, "owner": spec.owner, "imports": imports,
            "enable_alloc_tracker": spec.enable_alloc_tracker}


def _signal_name(num: int) -> str:
    try:
        return signal_mod.Signals(num).name
    except ValueError:
        return f"signal {num}"


def run_trial(path: str, described: dict[str, Any], *, timeout: float = 30.0) -> TrialResult:
    """Run the child on ``path`` and report what happened to it."""
    pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-X", "faulthandler", "-m", "relib_pure.reload.trial_child",
           json.dumps({**described, "path": path})]
    stage, result = "start", None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else ""
        return TrialResult(False, stage, {"code": "reload.trial-failed", "path": path,
                                          "message": f"timed out after {timeout} s"}, None, err)
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and "stage" in msg:
            stage = msg["stage"]
            if "ok" in msg:
                result = msg
    sig = _signal_name(-proc.returncode) if proc.returncode < 0 else None
    if result is None or sig is not None:
        return TrialResult(False, stage, None, sig, proc.stderr)
    return TrialResult(bool(result["ok"]), stage, result.get("error"), None, proc.stderr)


def _zero(restype: Any) -> Any:
    return None if restype is None else 0


def child(described: dict[str, Any]) -> int:
    """The child side: load, start, unload; one JSON line per stage on stdout."""
    from relib_pure.errors import RelibError

    out = os.dup(1)
    os.dup2(2, 1)  # what the library prints must not garble the protocol lines

    def emit(stage: str, **extra: Any) -> None:
        os.write(out, (json.dumps({"stage": stage, **extra}) + "\n").encode())

    path = described["path"]
    stage = "load"
    try:
        emit(stage)
        if described["relib"]:
            from relib_pure.relib import load_module

            imports = {}
            for imp in described["imports"]:
                restype = _resolve(imp["restype"])
                argtypes = [_resolve(a) for a in imp["argtypes"]]
                imports[imp["name"]] = (restype, argtypes,
                                        lambda *a, _r=restype: _zero(_r))
            handle: Any = load_module(path, imports=imports, owner=described["owner"],
                                      enable_alloc_tracker=described["enable_alloc_tracker"],
                                      check=False)
            stage = "main"
            emit(stage)
            relib = handle.module.info.relib
            if described["main"] and relib is not None and relib.has_main:
                handle.call_main(_resolve(described["main_restype"]))
        else:
            import ctypes

            from relib_pure.runtime import load

            handle = load(path, owner=described["owner"], check=False)
            stage = "main"
            emit(stage)
            if described["init"]:
                result = handle.function(described["init"], ctypes.c_int, ())()
                if result != 0:
                    raise ReloadError(f"{described['init']}() returned {result}", path=path,
                                      code="reload.main-failed")
        stage = "unload"
        emit(stage)
        handle.unload()
    except RelibError as e:
        emit(stage, ok=False, error=e.to_dict())
        return 1
    emit("done", ok=True)
    return 0

