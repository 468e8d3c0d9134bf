"""Architecture check: can this interpreter map the library at all?"""

from __future__ import annotations

from relib_pure.compat.host import HostPlatform
from relib_pure.compat.report import Finding
from relib_pure.model import LibraryInfo

__all__ = ["check_arch"]


def check_arch(info: LibraryInfo, host: HostPlatform) -> list[Finding]:
    """Compare format, machine, bitness, byte order and OS with ``host``, and
    refuse PIE executables (``ET_DYN`` like libraries, but not loadable).

    Every mismatch is an error: ``dlopen`` would fail with "wrong ELF class"
    or "cannot open shared object file" at best.
    """
    found: list[Finding] = []
    details = {"library": {"format": info.format, "machine": info.machine, "bits": info.bits,
                           "endianness": info.endianness, "os": info.os},
               "host": host.to_dict()}
    host_format = "pe" if host.os == "windows" else "elf"
    if info.format != host_format:
        found.append(Finding("arch.format", "error",
                             f"{info.format.upper()} file cannot be loaded by a {host.os} "
                             f"interpreter (needs {host_format.upper()})", details))
    if info.machine != host.machine:
        found.append(Finding("arch.machine", "error",
                             f"built for {info.machine}, this interpreter is {host.machine}",
                             details))
    if info.bits != host.bits:
        found.append(Finding("arch.bits", "error",
                             f"{info.bits}-bit library, this interpreter is {host.bits}-bit",
                             details))
    if info.endianness != host.endianness:
        found.append(Finding("arch.endianness", "error",
                             f"{info.endianness}-endian library, this interpreter is "
                             f"{host.endianness}-endian", details))
    if info.os != host.os and info.format == host_format:
        found.append(Finding("arch.os", "error",
                             f"built for {info.os}, this interpreter runs on {host.os}", details))
    if "PIE" in info.dynamic_flags_1:
        # glibc 2.30+ refuses DF_1_PIE objects in dlopen, whatever else matches.
        found.append(Finding("arch.executable", "error",
                             "a position-independent executable (DF_1_PIE), not a shared "
                             "library: dlopen refuses it ('cannot dynamically load "
                             "position-independent executable')",
                             {"interpreter": info.interpreter,
                              "dynamic_flags_1": list(info.dynamic_flags_1)}))
    return found
