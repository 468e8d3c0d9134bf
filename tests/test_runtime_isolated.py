"""Runtime scenarios that leave process-wide state or crash: each runs in a child.

The child is ``python -m relib_pure run ...`` (the CLI, whose JSON is validated
against ``schemas/run.json``) or a short script; the library stays mapped or
the child dies, never this test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from relib_pure.runtime import probe

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, timeout: float = 60) -> tuple[int, dict[str, Any], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "relib_pure", "run", *args, "--json"],
                          capture_output=True, text=True, timeout=timeout, env=env)
    data = json.loads(proc.stdout)
    validate_run_json(data)
    return proc.returncode, data, proc.stderr


def validate_run_json(data: dict[str, Any]) -> None:
    schema = json.loads(resources.files("relib_pure").joinpath("schemas/run.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(data, schema)


def run_script(body: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def cause_codes(data: dict[str, Any]) -> list[str]:
    return [c["code"] for c in data["unload"]["causes"]]


def test_cli_run_clean_exit_0(native) -> None:
    code, data, _ = run_cli(str(native("c_plain")), "--call", "plain_bump", "--restype", "int",
                            "--times", "3")
    assert code == 0
    assert data["clean"] and data["stage"] == "done" and not data["isolated"]
    assert data["call"] == {"symbol": "plain_bump", "restype": "int", "times": 3,
                            "last_result": 3, "argtypes": [], "args": [], "declared": True,
                            "signature": "int plain_bump(void)"}
    assert data["unload"]["unloaded"] is True and data["error"] is None


def test_nodelete_reports_cause(native) -> None:
    code, data, _ = run_cli(str(native("c_nodelete")), "--call", "nodelete_bump")
    assert code == 1
    assert data["error"]["code"] == "unload.still-mapped"
    assert data["unload"]["unloaded"] is False and data["unload"]["still_mapped"]
    assert cause_codes(data) == ["nodelete"]


def test_gnu_unique_reports_cause_and_symbols(native) -> None:
    code, data, _ = run_cli(str(native("cxx_unique")), "--call", "unique_bump",
                            "--restype", "int")
    assert code == 1
    assert data["call"]["last_result"] == 1
    assert cause_codes(data) == ["gnu-unique"]
    detail = data["unload"]["causes"][0]["detail"]
    assert "_ZZ14unique_countervE7counter" in detail


def test_rust_tls_touched_on_caller_thread_is_pinned(native) -> None:
    """owner='caller': the thread-local lives on the (still running) main thread,
    so glibc's TLS-destructor counter keeps the library: the cause says so."""
    code, data, _ = run_cli(str(native("rust_tls")), "--owner", "caller",
                            "--call", "rust_tls_len", "--restype", "uint64")
    assert code == 1
    assert cause_codes(data) == ["tls-destructors"]
    assert data["unload"]["loader_knows"] is True


def test_rust_tls_same_call_through_owner_thread_is_clean(native) -> None:
    code, data, _ = run_cli(str(native("rust_tls")), "--call", "rust_tls_len",
                            "--restype", "uint64")
    assert code == 0 and data["clean"], data


def test_thread_left_running_exit_1(native) -> None:
    code, data, stderr = run_cli(str(native("rt_basic")), "--call", "rt_thread_start",
                                 "--restype", "int")
    assert code == 1
    assert data["error"]["code"] == "unload.threads-running"
    assert len(data["unload"]["leaks"]["threads"]) == 1
    # at exit the module is deliberately left loaded, without a crash
    assert "left loaded at exit" in stderr
    from relib_pure.cli.run_cmd import render_text

    text = render_text(data)
    assert "still loaded: unload refused" in text and "STILL MAPPED" not in text
    assert f"thread still running: tid {data['unload']['leaks']['threads'][0]['tid']}" in text


def test_unreadable_input_exit_2(tmp_path: Path) -> None:
    code, data, _ = run_cli(str(tmp_path / "nope.so"))
    assert code == 2
    assert data["error"]["code"] == "inspect.not-found" and data["unload"] is None
    assert data["stage"] == "validate"


def test_missing_symbol_exit_2(native) -> None:
    code, data, _ = run_cli(str(native("c_plain")), "--call", "does_not_exist")
    assert code == 2
    assert data["error"]["code"] == "load.symbol-missing"
    assert data["unload"]["clean"] is True  # it was unloaded all the same


def test_segfault_under_probe_is_a_report(native) -> None:
    report = probe(native("rt_basic"), call="rt_segfault", restype="int")
    assert report.crashed and not report.clean
    assert report.signal == 11 and report.signal_name == "SIGSEGV"
    assert report.exit_status is None and report.stage == "call"
    assert "Segmentation fault" in report.stderr  # faulthandler's traceback
    assert report.exit_code == 1
    data = report.to_dict()
    validate_run_json(data)
    assert data["isolated"] and data["process"]["signal"] == 11


def test_abort_under_cli_isolated(native) -> None:
    code, data, _ = run_cli(str(native("rt_basic")), "--call", "rt_abort", "--isolated")
    assert code == 1
    assert data["process"]["signal_name"] == "SIGABRT" and data["stage"] == "call"


def test_probe_clean_run(native) -> None:
    report = probe(native("c_plain"), call="plain_bump", restype="int", times=2)
    assert report.clean and report.exit_status == 0 and report.signal is None
    assert report.result is not None and report.result.call["last_result"] == 2
    validate_run_json(report.to_dict())


def test_interpreter_exit_unloads_forgotten_modules(native) -> None:
    proc = run_script(f"""
        import ctypes, logging, sys
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
        from relib_pure.runtime import load
        a = load({str(native("rust_tls"))!r})
        a.function("rust_tls_touch", ctypes.c_size_t, (ctypes.c_uint8,))(7)
        b = load({str(native("c_plain"))!r}, owner="caller")
        print("loaded", flush=True)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "loaded"
    assert "left loaded at exit" not in proc.stderr
    assert proc.stderr.count("unloaded cleanly at exit") == 2, proc.stderr


def test_hanging_export_under_probe_times_out(native) -> None:
    report = probe(native("rt_basic"), call="rt_hang", timeout=5)  # margin for a loaded machine
    assert report.timed_out and report.crashed and report.stage == "call"
    assert report.exit_code == 1 and report.signal is None
    validate_run_json(report.to_dict())


def test_incompatible_library_exit_1(native) -> None:
    # a failed check is a verdict (README: 1 means a check failed), not unreadable input
    code, data, _ = run_cli(str(native("cross_foreign")))
    assert code == 1
    assert data["error"]["code"].startswith("compat.") and data["stage"] == "validate"


def test_cli_flags_reach_dlopen(native) -> None:
    lib = str(native("rt_flags"))
    code, data, _ = run_cli(lib)
    assert code == 2 and data["error"]["code"] == "load.dlopen"
    code, data, _ = run_cli(lib, "--lazy", "--deepbind", "--call", "rt_flags_getpid",
                            "--restype", "int", "--isolated")
    assert code == 0 and data["call"]["last_result"] == 424242


def test_relib_module_runs_its_protocol_or_plain(native) -> None:
    lib = str(native("relib_0_7"))
    code, data, stderr = run_cli(lib)
    assert code == 0 and data["clean"], data
    assert data["unload"]["driver"] == "relib-0.7"
    assert data["unload"]["extra"]["relib_generation"] == "0.7"
    assert "before_unload" in stderr  # the fixture prints it: relib's unload ran
    # --plain: nothing of relib runs, it still maps and leaves cleanly
    code, data, stderr = run_cli(lib, "--plain")
    assert code == 0 and data["clean"] and data["unload"]["driver"] == "plain"
    assert "before_unload" not in stderr


def test_relib_module_isolated_plain_flag_reaches_the_child(native) -> None:
    code, data, _ = run_cli(str(native("relib_0_7")), "--isolated", "--plain")
    assert code == 0 and data["unload"]["driver"] == "plain"
    code, data, _ = run_cli(str(native("relib_0_7")), "--isolated")
    assert code == 0 and data["unload"]["driver"] == "relib-0.7"


def test_cli_restype_names_match_the_runtime_table() -> None:
    from relib_pure.cli.run_cmd import RESTYPE_NAMES
    from relib_pure.runtime.probe import RESTYPES

    assert RESTYPE_NAMES == tuple(sorted(RESTYPES))


def test_nan_result_is_strict_json(native) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for extra in ((), ("--isolated",)):
        proc = subprocess.run([sys.executable, "-m", "relib_pure", "run", str(native("rt_basic")),
                               "--call", "rt_nan", "--restype", "double", "--json", *extra],
                              capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, proc.stderr

        def reject(constant: str) -> None:
            raise AssertionError(f"{constant} is not JSON")

        data = json.loads(proc.stdout, parse_constant=reject)
        validate_run_json(data)
        assert data["call"]["last_result"] == "nan"


def test_library_stdio_output_never_lands_in_the_json(native) -> None:
    """printf without a newline waits in C stdio's buffer (stdout is a pipe, so
    fully buffered) until exit() flushes it onto the real stdout, in front of
    or behind the JSON: the host flushes it while descriptor 1 is stderr."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = str(REPO)
    for extra in ((), ("--isolated",)):
        proc = subprocess.run([sys.executable, "-m", "relib_pure", "run", str(native("rt_basic")),
                               "--call", "rt_print", "--json", *extra],
                              capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)  # raises on text before or after the document
        validate_run_json(data)
        where = data["process"]["stderr"] if extra else proc.stderr
        assert "rt_print was here" in where


def test_interpreter_exit_does_not_wait_for_a_call_that_never_returns(native) -> None:
    """A daemon thread stuck in a native call holds the owner thread: exit must
    leave that module loaded (and say so) instead of queueing its unload behind
    the call forever; the idle module next to it is still unloaded."""
    proc = run_script(f"""
        import logging, sys, threading, time
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        from relib_pure.runtime import exit as rt_exit, load
        rt_exit.BUSY_TIMEOUT = 0.5
        busy = load({str(native("rt_basic"))!r})
        idle = load({str(native("c_plain"))!r})
        threading.Thread(target=busy.function("rt_hang", None), daemon=True).start()
        deadline = time.monotonic() + 20
        while not busy._owner._busy and time.monotonic() < deadline:
            time.sleep(0.01)  # until the owner thread is inside rt_hang
        print("loaded", flush=True)
    """, timeout=40)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "loaded"
    assert "librt_basic.so: left loaded at exit: a call into it is still running" in proc.stderr
    assert "libc_plain.so: unloaded cleanly at exit" in proc.stderr


def test_probe_of_a_path_beginning_with_a_dash(native, tmp_path: Path, monkeypatch) -> None:
    import shutil

    shutil.copy(native("c_plain"), tmp_path / "-lib.so")
    monkeypatch.chdir(tmp_path)
    report = probe("-lib.so", call="plain_bump", restype="int")
    assert report.clean, report.stderr
    assert report.result is not None and report.result.call["last_result"] == 1


def test_owner_thread_that_cannot_start_is_a_load_error(native) -> None:
    """Address space too small for a thread stack: a typed LoadError naming the
    file, nothing mapped, and the caller-owned mode still works."""
    proc = run_script(f"""
        import resource
        from relib_pure.errors import LoadError
        from relib_pure.runtime import load, procfs
        lib = {str(native("rt_basic"))!r}
        load(lib, owner="caller").unload()  # imports and caches done before the limit
        with open("/proc/self/status") as f:
            vm = next(int(l.split()[1]) for l in f if l.startswith("VmSize:")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (4 << 20), resource.RLIM_INFINITY))
        try:
            load(lib)
        except LoadError as e:
            print(e.code, e.path == lib, flush=True)
        print(lib.encode() in procfs.read_maps(), flush=True)
        m = load(lib, owner="caller")
        print(m.function("rt_tag")(), m.unload().clean, flush=True)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["load.init-failed", "True", "False", "1", "True"]


def test_schema_enums_follow_the_code() -> None:
    from relib_pure.runtime.probe import RESTYPES, STAGES
    from relib_pure.runtime.report import CAUSES

    schema = json.loads(resources.files("relib_pure").joinpath("schemas/run.json").read_text())
    props = schema["properties"]
    assert props["stage"]["enum"] == list(STAGES)
    assert set(props["call"]["oneOf"][1]["properties"]["restype"]["enum"]) == set(RESTYPES)
    unload = schema["$defs"]["unload"]["properties"]
    assert set(unload["causes"]["items"]["properties"]["code"]["enum"]) == set(CAUSES)


def test_report_with_every_kind_of_leak_matches_the_schema(native, tmp_path: Path) -> None:
    import ctypes
    import shutil

    from relib_pure.runtime import load

    lib = tmp_path / "librt_leaks.so"
    shutil.copy(native("rt_basic"), lib)
    victim = tmp_path / "victim.txt"
    victim.write_text("x")
    module = load(lib)
    fd = module.function("rt_leak_fd", ctypes.c_int, (ctypes.c_char_p,))(os.fsencode(victim))
    addr = module.function("rt_leak_mmap", ctypes.c_void_p, (ctypes.c_long,))(3)
    try:
        report = module.unload()
    finally:
        os.close(fd)
    data = report.to_dict()
    assert data["leaks"]["fds"] and data["leaks"]["mappings"] and addr
    schema = json.loads(resources.files("relib_pure").joinpath("schemas/run.json").read_text())
    jsonschema.validate(data, {"$schema": schema["$schema"], "$defs": schema["$defs"],
                               "$ref": "#/$defs/unload"})
    # the check bites: a leak the schema does not describe is refused
    data["leaks"]["fds"][0]["target"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, {"$schema": schema["$schema"], "$defs": schema["$defs"],
                                   "$ref": "#/$defs/unload"})


def test_crash_in_the_unload_stage_is_reported_as_such(native) -> None:
    """The library's destructor segfaults inside dlclose: the report names the
    signal and the stage the child had reached (unload, after the call)."""
    report = probe(native("rt_basic"), call="rt_arm_unload_crash")
    assert report.crashed and report.signal_name == "SIGSEGV"
    assert report.stage == "unload" and report.result is None
    assert "dlclose" in report.stderr  # faulthandler: the Python frame that called it
    validate_run_json(report.to_dict())
