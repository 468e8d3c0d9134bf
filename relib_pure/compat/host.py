"""The platform of the running interpreter, as the architecture check sees it.

Detected once from the ELF header of ``sys.executable`` (what the dynamic
loader will compare a library against), with ``platform``/``struct`` as the
fallback; tests inject their own :class:`HostPlatform`.
"""

from __future__ import annotations

import functools
import logging
import platform
import struct
import sys
from dataclasses import dataclass

from relib_pure.inspection import elfhead

__all__ = ["HostPlatform", "elf_header_platform"]

logger = logging.getLogger(__name__)

# platform.machine() spellings -> LibraryInfo.machine names (``riscv64`` keeps
# its bitness there, as inspection names e_machine 243 in a 64-bit file).
_MACHINE_ALIASES = {
    "amd64": "x86_64", "x64": "x86_64", "i486": "i386", "i586": "i386", "i686": "i386",
    "x86": "i386", "arm64": "aarch64", "armv7l": "arm", "armv6l": "arm",
    "ppc64le": "ppc64", "mips": "mips32",
}


@dataclass(frozen=True)
class HostPlatform:
    """``machine`` (``x86_64``...), ``bits``, ``endianness`` and ``os`` of a host."""

    machine: str
    bits: int
    endianness: str
    os: str = "linux"

    @classmethod
    @functools.lru_cache(maxsize=1)
    def detect(cls) -> HostPlatform:
        """The running interpreter's platform (computed once per process)."""
        os_name = "windows" if sys.platform.startswith("win") else sys.platform.rstrip("0123456789")
        found = elf_header_platform(sys.executable) if os_name == "linux" else None
        if found is not None:
            return cls(found[0], found[1], found[2], os_name)
        machine = platform.machine().lower()
        machine = _MACHINE_ALIASES.get(machine, machine)
        return cls(machine, struct.calcsize("P") * 8, sys.byteorder, os_name)

    def to_dict(self) -> dict[str, object]:
        return {"machine": self.machine, "bits": self.bits, "endianness": self.endianness,
                "os": self.os}


def elf_header_platform(path: str) -> tuple[str, int, str] | None:
    """``(machine, bits, endianness)`` from the ELF header of ``path``, or
    ``None`` when it cannot be read or is not ELF."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError as e:
        logger.debug("cannot read %s: %s", path, e)
        return None
    ident = elfhead.parse_ident(head)
    if ident is None:
        return None
    # The very naming inspect() gives libraries, or every riscv64 module
    # would be reported as built for another machine.
    from relib_pure.inspection.elf import machine_name

    return machine_name(ident.machine, ident.bits), ident.bits, ident.endianness
