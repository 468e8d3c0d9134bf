"""``trial="child"``: load a new version and run its main in a child process first.

A crash in the new code (a segfault in ``main``, an abort) then costs a child
process and rejects the version, instead of killing the host. The child is a
fresh interpreter (``python -m relib_pure.reload.trial_child SPEC``): it loads the
shadow copy the same way the reloader will, runs ``main`` (relib) or
``init`` (plain), unloads, and prints one JSON line per stage.

The module's relib imports are answered by the host's own Python
implementations: the child sends each call up its stdout and waits for the
answer on its stdin (:mod:`.trial_wire` says which values cross). So ``main``
sees what it will see after the swap, and an implementation that raises
aborts the child (as it would abort the host), which rejects the version. An
import whose signature cannot cross (pointers, other structures) answers zero
in the child; the result names those imports. ``implementations=None`` answers
every import with zero (no host code runs for a trial).
"""

from __future__ import annotations

import importlib
import json
import os
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from relib_pure.errors import ReloadError
from relib_pure.runtime.probe import child_env, signal_name

__all__ = ["TrialResult", "describe_spec", "run_trial", "trial_implementations"]


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
    #: import calls the host's implementations answered
    forwarded: int = 0
    #: imports whose signature cannot cross: the child answered them with zero
    zeroed: tuple[str, ...] = ()

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
        specs, _impls = _relib_imports(spec)
        imports = [{"name": s.name, "trait": s.trait, "restype": _type_ref(s.restype),
                    "argtypes": [_type_ref(a) for a in s.argtypes]} for s in specs]
    return {"relib": spec.relib, "main": spec.main, "main_restype": _type_ref(spec.main_restype),
            "init": spec.init, "owner": spec.owner, "imports": imports,
            "enable_alloc_tracker": spec.enable_alloc_tracker}


def trial_implementations(spec: Any) -> dict[str, Callable[..., Any]] | None:
    """The Python implementations of ``spec``'s relib imports (``None``: not relib)."""
    return _relib_imports(spec)[1] if spec.relib else None


def _relib_imports(spec: Any) -> tuple[Any, dict[str, Callable[..., Any]]]:
    """``(import specs, implementations)`` of a relib ``spec``, as ``load_module`` reads them."""
    from relib_pure.relib import _import_specs

    return _import_specs(spec.import_types, spec.interface, spec.imports or {})


def run_trial(path: str, described: dict[str, Any], *, timeout: float = 30.0,
              implementations: Mapping[str, Callable[..., Any]] | None = None) -> TrialResult:
    """Run the child on ``path`` and report what happened to it.

    With ``implementations`` (import name -> callable, as ``load_module`` takes
    them) the child's import calls are answered by them, on this thread.
    """
    env = child_env()
    forward = implementations is not None
    cmd = [sys.executable, "-X", "faulthandler", "-m", "relib_pure.reload.trial_child",
           json.dumps({**described, "path": path, "forward": forward})]
    stage, result, forwarded, zeroed = "start", None, 0, ()
    deadline = time.monotonic() + timeout
    # stderr to a file: a chatty library must not fill a pipe nobody reads meanwhile
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if forward else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=err, env=env)
        try:
            for msg in _messages(proc, deadline):
                if "call" in msg and proc.stdin is not None:
                    forwarded += 1
                    _answer(proc.stdin, implementations or {}, msg)
                elif "stage" in msg:
                    stage = msg["stage"]
                    zeroed = tuple(msg.get("zeroed", zeroed))
                    if "ok" in msg:
                        result = msg
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return TrialResult(False, stage, {"code": "reload.trial-failed", "path": path,
                                              "message": f"timed out after {timeout} s"},
                               None, _read(err), forwarded, zeroed)
        finally:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
            if proc.poll() is None:  # left by an exception (Ctrl-C in an implementation)
                proc.kill()
                proc.wait()
        stderr = _read(err)
    sig = signal_name(-proc.returncode) if proc.returncode < 0 else None
    if result is None or sig is not None:
        return TrialResult(False, stage, None, sig, stderr, forwarded, zeroed)
    return TrialResult(bool(result["ok"]), stage, result.get("error"), None, stderr,
                       forwarded, zeroed)


def _read(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read().decode("utf-8", "replace")


def _messages(proc: subprocess.Popen[bytes], deadline: float) -> Iterator[dict[str, Any]]:
    """The child's JSON lines as they come; ``TimeoutExpired`` past ``deadline``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(proc.args, 0)
            if not sel.select(left):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if isinstance(msg, dict):
                    yield msg


def _answer(stdin: IO[bytes], implementations: Mapping[str, Callable[..., Any]],
            msg: dict[str, Any]) -> None:
    """Call the host's implementation for one of the child's import calls and reply."""
    from relib_pure.reload.trial_wire import decode, encode

    name = str(msg.get("call"))
    reply: dict[str, Any]
    func = implementations.get(name)
    if func is None:
        reply = {"error": f"the host has no implementation of {name!r}"}
    else:
        try:
            reply = {"result": encode(func(*[decode(a) for a in msg.get("args", ())]))}
        except Exception as e:  # the child turns it into the module's abort
            reply = {"error": f"{type(e).__name__}: {e}"}
    try:
        stdin.write((json.dumps(reply) + "\n").encode())
        stdin.flush()
    except (BrokenPipeError, ValueError):  # the child is gone: its exit says why
        pass


class _Host:
    """The child's line to the host: stage lines and import calls up, answers down
    (``answers`` is ``None`` when no implementations answer), one at a time."""

    def __init__(self, out: int, answers: IO[bytes] | None) -> None:
        self.out = out
        self.answers = answers
        self.lock = threading.Lock()

    def emit(self, msg: dict[str, Any]) -> None:
        with self.lock:
            os.write(self.out, (json.dumps(msg) + "\n").encode())

    def stub(self, name: str) -> Callable[..., Any]:
        from relib_pure.reload.trial_wire import decode, encode

        def call(*args: Any) -> Any:
            line = json.dumps({"call": name, "args": [encode(a) for a in args]}) + "\n"
            assert self.answers is not None
            with self.lock:  # module threads may call imports concurrently
                os.write(self.out, line.encode())
                answer = self.answers.readline()
            if not answer:
                raise RuntimeError(f"the host did not answer the import call {name!r}")
            reply = json.loads(answer)
            if "error" in reply:
                raise RuntimeError(f"host import {name!r}: {reply['error']}")
            return decode(reply.get("result"))
        return call


def _zero(restype: Any) -> Any:
    return None if restype is None else 0


def child(described: dict[str, Any]) -> int:
    """The child side: load, start, unload; one JSON line per stage on stdout."""
    from relib_pure.errors import RelibError
    from relib_pure.reload.trial_wire import crosses

    out = os.dup(1)
    os.dup2(2, 1)  # what the library prints must not garble the protocol lines
    answers = None
    if described.get("forward"):
        # the host's answers, on a descriptor of their own: the library gets no stdin
        answers = os.fdopen(os.dup(0), "rb")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    host = _Host(out, answers)
    zeroed: list[str] = []

    def emit(stage: str, **extra: Any) -> None:
        host.emit({"stage": stage, "zeroed": zeroed, **extra})

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
                # a type this interpreter cannot import is no value to send either
                known = (restype is not None or imp["restype"] is None) and \
                    None not in argtypes
                if answers is not None and known and crosses(restype, argtypes):
                    func = host.stub(imp["name"])
                else:
                    func = (lambda *a, _r=restype: _zero(_r))
                    if answers is not None:
                        zeroed.append(imp["name"])
                imports[imp["name"]] = (restype, argtypes, func)
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

