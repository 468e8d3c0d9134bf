"""Is the library file finished? Its identity has stopped moving and its headers fit.

A build or a copy writes a library in pieces; loading it half-written maps
garbage or fails in ``dlopen``. :func:`wait_settled` returns only once two
``stat`` readings agree and :func:`elf_incomplete` finds every table the ELF
header declares inside the file (section headers come last in the file, so a
truncated write loses them first).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FileState", "Settled", "file_state", "elf_incomplete", "wait_settled"]

_PT_LOAD = 1


@dataclass(frozen=True)
class FileState:
    """What identifies one version of a file on disk (a rewrite changes one of them)."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int


def file_state(path: str) -> FileState | None:
    """The file's :class:`FileState`, or ``None`` when it does not exist (mid-rename)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return FileState(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def elf_incomplete(head: bytes, size: int, read_at: Callable[[int, int], bytes]) -> str | None:
    """Why an ELF file of ``size`` bytes is not complete, or ``None`` when it is.

    ``head`` holds at least its first 64 bytes (fewer when the file is
    shorter); ``read_at(offset, length)`` reads more. Checks that the program
    header table, every ``PT_LOAD`` segment's file bytes and the section
    header table lie inside the file.
    """
    if size == 0:
        return "the file is empty"
    if len(head) < 16 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) \
            or head[5] not in (1, 2):
        return "not an ELF file (or its first bytes are not written yet)"
    is64 = head[4] == 2
    end = "<" if head[5] == 1 else ">"
    need = 64 if is64 else 52
    if len(head) < need:
        return f"the ELF header is cut short ({len(head)} of {need} bytes)"
    if is64:
        phoff, shoff = struct.unpack_from(end + "QQ", head, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(end + "HHHH", head, 54)
    else:
        phoff, shoff = struct.unpack_from(end + "II", head, 28)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(end + "HHHH", head, 42)
    if phoff + phentsize * phnum > size:
        return (f"the program headers end at byte {phoff + phentsize * phnum}, "
                f"past the file's {size} bytes")
    if shoff and shoff + shentsize * shnum > size:
        return (f"the section headers end at byte {shoff + shentsize * shnum}, "
                f"past the file's {size} bytes")
    table = read_at(phoff, phentsize * phnum)
    for i in range(phnum):
        entry = table[i * phentsize:(i + 1) * phentsize]
        if is64:
            p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack_from(end + "IIQQQQ",
                                                                             entry)
        else:
            p_type, p_offset, _va, _pa, p_filesz = struct.unpack_from(end + "IIIII", entry)
        if p_type == _PT_LOAD and p_offset + p_filesz > size:
            return (f"segment {i} ends at byte {p_offset + p_filesz}, "
                    f"past the file's {size} bytes")
    return None


def _check_file(path: str, state: FileState) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(64)

            def read_at(offset: int, length: int) -> bytes:
                f.seek(offset)
                return f.read(length)

            return elf_incomplete(head, state.size, read_at)
    except FileNotFoundError:
        return "the file disappeared"
    except struct.error:
        return "a program header is cut short"


@dataclass(frozen=True)
class Settled:
    """The outcome of :func:`wait_settled`: the ``state`` reached and, when the file
    never became complete, ``incomplete`` says why (``missing`` if it never existed)."""

    state: FileState | None
    incomplete: str | None = None

    @property
    def ok(self) -> bool:
        return self.state is not None and self.incomplete is None


def wait_settled(path: str, *, timeout: float, interval: float = 0.005,
                 sleep: Callable[[float], None] = time.sleep) -> Settled:
    """Wait until ``path`` is complete and two ``stat`` readings ``interval`` apart agree.

    Gives up after ``timeout`` seconds, returning the last state with the
    reason it is not complete.
    """
    deadline = time.monotonic() + timeout
    reason = "the file does not exist"
    state = file_state(path)
    while True:
        if state is not None:
            why = _check_file(path, state)
            again = file_state(path)
            if why is None and again == state:
                return Settled(state)
            reason = why or "the file is still changing"
            state = again
        if time.monotonic() >= deadline:
            return Settled(state, reason)
        sleep(interval)
        if state is None:
            state = file_state(path)
