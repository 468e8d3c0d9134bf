"""Compilation-info check: was the module built the way the host expects?"""

from __future__ import annotations

from relib_pure.compat.expectation import Expectation, rustc_from_comments, version_matches
from relib_pure.compat.report import Finding
from relib_pure.model import LibraryInfo

__all__ = ["check_compilation"]

_FIELDS = (
    ("rustc_version", "compilation.rustc-version", "rustc version"),
    ("host_triple", "compilation.host-triple", "rustc host triple"),
    ("llvm_version", "compilation.llvm-version", "LLVM version"),
    ("relib_version", "compilation.relib-version", "relib version"),
)


def check_compilation(info: LibraryInfo, expect: Expectation | None) -> list[Finding]:
    """Compare the module's compilation info field by field with ``expect``.

    Unreadable compilation info is always an error (the host cannot choose a
    protocol). Without an expectation nothing else is compared. A library
    without relib info is compared on the rustc version of its ``.comment``
    when no relib field is expected (``--rustc-from-path`` on a plain Rust
    cdylib compares what the file can tell: the rustc that built it).
    """
    relib = info.relib
    ci = relib.compilation_info if relib is not None else None
    if relib is not None and ci is None and relib.compilation_info_error:
        return [Finding("compilation.unreadable", "error",
                        f"relib compilation info could not be read: {relib.compilation_info_error}",
                        {"error": relib.compilation_info_error})]
    if expect is None or expect.empty:
        return []
    source = {"expectation": expect.source}
    if ci is None:
        rustc = rustc_from_comments(info.comments)
        if expect.rustc_comparable and rustc is not None:
            if version_matches(expect.rustc_version or "", rustc):
                return [Finding("compilation.match", "info",
                                f"built by rustc {rustc} as expected (.comment)",
                                {**source, "rustc_version": rustc})]
            return [Finding("compilation.rustc-version", "error",
                            f"built by rustc {rustc}, expected {expect.rustc_version} "
                            f"({expect.source})",
                            {**source, "expected": expect.rustc_version, "actual": rustc,
                             "from": ".comment"})]
        return [Finding("compilation.missing", "error",
                        "no relib compilation info to compare with the expectation "
                        f"({expect.source})", source)]

    found: list[Finding] = []
    for attr, code, label in _FIELDS:
        want = getattr(expect, attr)
        have = getattr(ci, attr)
        if want is None:
            continue
        ok = version_matches(want, have) if attr == "rustc_version" else want == have
        if not ok:
            found.append(Finding(code, "error", f"{label} is {have!r}, expected {want!r} "
                                 f"({expect.source})",
                                 {**source, "expected": want, "actual": have}))
    if expect.unloading is not None and expect.unloading != ci.unloading_enabled:
        have_text = "with" if ci.unloading_enabled else "without"
        found.append(Finding("compilation.unloading", "error",
                             f"built {have_text} unloading, expected "
                             f"{'with' if expect.unloading else 'without'} ({expect.source})",
                             {**source, "expected": expect.unloading,
                              "actual": ci.unloading_enabled}))
    if not found:
        found.append(Finding("compilation.match", "info",
                             f"compilation info matches ({expect.source}): {ci.raw}",
                             {**source, "raw": ci.raw}))
    return found
