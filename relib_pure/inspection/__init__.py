"""Static inspection: a library file's bytes -> :class:`~relib_pure.model.LibraryInfo`.

Nothing here loads the library. :func:`inspect` checks the path, maps the file,
sniffs its magic and hands the bytes to the ELF reader
(:mod:`relib_pure.inspection.elf`) or the PE reader
(:mod:`relib_pure.inspection.pe`). Every failure is an
:class:`~relib_pure.errors.InspectionError` whose ``code`` says what went
wrong and whose ``path`` names the file.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import re
import stat
import threading
from typing import TYPE_CHECKING, Callable

from relib_pure import _hostfds
from relib_pure.errors import InspectionError
from relib_pure.inspection._image import Buffer

if TYPE_CHECKING:
    # The model (and dataclasses) load with the reader, after the hash thread
    # has started: every import before it delays the whole report.
    from relib_pure.model import LibraryInfo

__all__ = ["inspect", "inspect_bytes", "begin_inspect", "PendingInspection", "sniff_format",
           "MAX_HASHED_SIZE"]

logger = logging.getLogger(__name__)

# Files above this are mapped, not read, and hashed on a second thread while
# the first one parses (hashlib releases the GIL): for a 150 MB library the
# hash costs as much as the whole parse.
_MMAP_THRESHOLD = 1 << 20
#: Files above this are not hashed (``sha256`` is ``""``): hashing reads every
#: byte, and a sparse file can claim 64 GB; no real library comes near.
MAX_HASHED_SIZE = 1 << 30

# libc.so and friends in lib directories are text: "GROUP ( libc.so.6 ... )"
_LINKER_SCRIPT = re.compile(rb"\b(GROUP|INPUT|OUTPUT_FORMAT)\s*\(|GNU ld script")
_HEAD = 256

_MACHO_MAGICS = {b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
                 b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe", b"\xbe\xba\xfe\xca"}


def sniff_format(head: bytes) -> str | None:
    """``"elf"``, ``"pe"`` (any ``MZ`` file) or ``None`` from a file's first bytes."""
    if head[:4] == b"\x7fELF":
        return "elf"
    if head[:2] == b"MZ":
        return "pe"
    return None


def _unknown_format(path: str, head: bytes) -> InspectionError:
    if head[:4] == b"\xca\xfe\xba\xbe":
        what = "a Mach-O universal binary (macOS) or Java class file, not an ELF or PE library"
    elif head[:4] in _MACHO_MAGICS:
        what = "a Mach-O file (macOS), which relib_pure does not read"
    elif head.startswith(b"!<arch>\n"):
        what = "a static library archive (ar), not a shared library"
    elif _LINKER_SCRIPT.search(head) and head.isascii():
        what = "a GNU ld linker script, not a shared library"
    else:
        what = f"not an ELF or PE file (starts with {head[:8].hex(' ')})"
    return InspectionError(what, path=path, code="inspect.unknown-format")


def _reader(path: str, head: bytes) -> Callable[[str, Buffer], LibraryInfo]:
    kind = sniff_format(head)
    if kind == "elf":
        from relib_pure.inspection.elf import read_elf
        return read_elf
    if kind == "pe":
        from relib_pure.inspection.pe import read_pe
        return read_pe
    raise _unknown_format(path, head)


def inspect_bytes(data: bytes, path: str = "<bytes>", *, signatures: bool = False) -> LibraryInfo:
    """Inspect a library held in memory; ``path`` names it in errors and the result.

    ``signatures`` also reads the DWARF signatures (see :func:`inspect`).
    """
    if isinstance(data, memoryview):
        data = data.tobytes()
    if not data:
        raise InspectionError("the data is empty", path=path, code="inspect.empty")
    info = _with_hash(_reader(path, bytes(data[:_HEAD]))(path, data), data)
    if signatures:
        from relib_pure.inspection.dwarf import with_debug_info

        info = with_debug_info(info, data)
    return info


def inspect(path: str | os.PathLike[str], *, signatures: bool = False) -> LibraryInfo:
    """Inspect the library file at ``path`` without loading it.

    ``signatures`` also reads, from DWARF debug information, the signatures
    of its exported functions and relib import slots into ``info.debug``
    (:mod:`relib_pure.inspection.dwarf`; ``status="absent"`` without DWARF,
    ``inspect.bad-dwarf`` when it is corrupt).

    Raises :class:`~relib_pure.errors.InspectionError` with code
    ``inspect.not-found``, ``inspect.not-a-file``, ``inspect.permission``,
    ``inspect.io``, ``inspect.empty``, ``inspect.unknown-format`` (including
    Mach-O), or whatever the format reader finds (``inspect.truncated``,
    ``inspect.malformed``, ``inspect.not-a-library``, ``inspect.unsupported``).
    """
    with begin_inspect(path) as pending:
        info = pending.result()
    if signatures:
        from relib_pure.inspection.dwarf import with_debug_info

        info = with_debug_info(info)
    return info


def begin_inspect(path: str | os.PathLike[str]) -> PendingInspection:
    """Like :func:`inspect`, but return as soon as the file is parsed.

    The whole-file sha256 of a big file may still be computing on a helper
    thread; :attr:`PendingInspection.info` holds every other fact meanwhile
    (with ``sha256=""``), so a caller can render them in parallel, as
    ``relib-pure inspect --json`` does. Use it as a context manager, or call
    :meth:`PendingInspection.result`, so the file mapping gets closed.
    """
    name = os.fsdecode(path)
    small: bytes | None = None
    fd = -1
    try:
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait forever for a writer
        fd = _hostfds.hold(lambda: os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InspectionError("not a regular file", path=name, code="inspect.not-a-file")
        if st.st_size == 0:
            raise InspectionError("the file is empty", path=name, code="inspect.empty")
        key = (st.st_dev, st.st_ino)
        if st.st_size < _MMAP_THRESHOLD:
            small = _read_all(fd, st.st_size)
        else:
            mapped = _hostfds.hold_file(
                key, lambda: mmap.mmap(fd, 0, access=mmap.ACCESS_READ))
    except InspectionError:
        _close(fd)
        raise
    except (OSError, ValueError) as e:
        _close(fd)
        raise _open_error(name, e) from e
    except BaseException:  # KeyboardInterrupt and the like: as they are
        _close(fd)
        raise
    if small is not None:
        _close(fd)
        return PendingInspection(inspect_bytes(small, name))
    assert isinstance(mapped, mmap.mmap)
    # Hash from the start, through the descriptor (never the mapping, which a
    # buffer export would pin): the reader's import and parse overlap with it.
    hasher = _Hasher(fd, st.st_size) if st.st_size <= MAX_HASHED_SIZE else None
    pending = PendingInspection(None, hasher, mapped, fd, key)
    try:
        pending.info = _reader(name, mapped[:_HEAD])(name, mapped)
    except BaseException:
        # Not waiting for the whole hash keeps a corrupt file's error immediate.
        pending.close()
        raise
    return pending


def _open_error(name: str, e: OSError | ValueError) -> InspectionError:
    """The InspectionError for a failure to open, stat or map ``name``."""
    if isinstance(e, FileNotFoundError):
        return InspectionError("no such file", path=name, code="inspect.not-found")
    if isinstance(e, IsADirectoryError):
        return InspectionError("is a directory", path=name, code="inspect.not-a-file")
    if isinstance(e, PermissionError):
        return InspectionError("permission denied", path=name, code="inspect.permission")
    if isinstance(e, NotADirectoryError):
        return InspectionError("a component of the path is not a directory", path=name,
                               code="inspect.not-found")
    return InspectionError(f"cannot read the file: {e}", path=name, code="inspect.io")


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break  # shrank meanwhile
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _close(fd: int) -> None:
    if fd >= 0:
        _hostfds.release(fd)


class PendingInspection:
    """A parsed library whose sha256 may still be computing (see :func:`begin_inspect`)."""

    def __init__(self, info: LibraryInfo | None, hasher: _Hasher | None = None,
                 mapping: mmap.mmap | None = None, fd: int = -1,
                 key: tuple[int, int] | None = None) -> None:
        #: every fact but ``sha256`` (which is ``""`` until :meth:`sha256` returns)
        self.info: LibraryInfo = info  # type: ignore[assignment]  # set by begin_inspect
        self._hasher = hasher
        self._mapping = mapping
        self._fd = fd
        self._key = key
        self._digest = info.sha256 if info is not None and info.sha256 else None
        if self._digest is None and hasher is None and mapping is not None:
            self._digest = ""  # over MAX_HASHED_SIZE: not hashed

    def sha256(self) -> str:
        """Wait for the hash, release the file, return the hex digest
        (``""`` for a file over :data:`MAX_HASHED_SIZE`, which is not hashed)."""
        if self._digest is None and self._hasher is not None:
            self._digest = self._hasher.result()
        self.close()
        if self._digest is None:
            raise InspectionError("the file was closed before it was hashed",
                                  path=self.info.path, code="inspect.io")
        return self._digest

    def result(self) -> LibraryInfo:
        """The complete :class:`~relib_pure.model.LibraryInfo`."""
        digest = self.sha256()
        if self.info.sha256 == digest:
            return self.info
        import dataclasses

        return dataclasses.replace(self.info, sha256=digest)

    def close(self) -> None:
        """Release the file; a hash still computing is abandoned
        (:meth:`sha256` then raises), not waited for."""
        if self._hasher is not None:
            self._digest = self._digest or self._hasher.cancel() or None
            self._hasher = None
        if self._mapping is not None:
            mapping, self._mapping = self._mapping, None
            assert self._key is not None
            _hostfds.release_file(self._key, mapping, mapping.close)
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            _hostfds.release(fd)

    def __enter__(self) -> PendingInspection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _with_hash(info: LibraryInfo, data: Buffer) -> LibraryInfo:
    if info.sha256 or len(data) > MAX_HASHED_SIZE:
        return info
    import dataclasses

    return dataclasses.replace(info, sha256=hashlib.sha256(data).hexdigest())


class _Hasher:
    """sha256 of a file, read through its descriptor on a helper thread in
    cancellable chunks into one private buffer (memory stays at one chunk
    whatever the file's size; nothing holds a view of the caller's mapping)."""

    #: bytes per read: hashlib releases the GIL for each, and a cancel waits
    #: for at most one. 96 KiB stays in cache between the copy and the hash
    #: (as fast as hashing the mapping) and below malloc's mmap threshold, so
    #: the buffer is no mapping of its own that a module's report could see.
    CHUNK = 96 << 10

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._digest = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relib-pure-sha256",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        h = hashlib.sha256()
        buffer = bytearray(self.CHUNK)
        view = memoryview(buffer)
        offset = 0
        try:
            while offset < self._size:
                if self._stop.is_set():
                    return
                n = os.preadv(self._fd, [view[:min(self.CHUNK, self._size - offset)]], offset)
                if n <= 0:
                    return  # shrank meanwhile: no digest of a file that changed
                h.update(view[:n])
                offset += n
        except OSError:
            return
        finally:
            view.release()
        self._digest = h.hexdigest()

    def result(self) -> str:
        """The hex digest (waits for the thread; ``""`` after :meth:`cancel`)."""
        self._thread.join()
        return self._digest

    def cancel(self) -> str:
        """Stop hashing (the current chunk finishes) and wait for the thread,
        so the descriptor may be closed; returns the digest if it was finished
        anyway, else ``""``."""
        self._stop.set()
        self._thread.join()
        return self._digest
