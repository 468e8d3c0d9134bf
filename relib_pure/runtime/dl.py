"""libc's dynamic loader called through ctypes with explicit flags.

``ctypes.CDLL`` always ORs in ``RTLD_NOW`` and only exposes symbols through
``__getattr__`` (which resolves any name in any library), and
``_ctypes.dlclose`` is private; so the host talks to ``dlopen``/``dlsym``/
``dlclose``/``dlerror``/``dlinfo`` directly. ``dlerror`` state is per thread:
every wrapper reads it on the thread that made the failing call.
"""

from __future__ import annotations

import ctypes
import logging
import os

logger = logging.getLogger(__name__)

__all__ = [
    "RTLD_LAZY", "RTLD_NOW", "RTLD_NOLOAD", "RTLD_DEEPBIND", "RTLD_GLOBAL", "RTLD_LOCAL",
    "RTLD_NODELETE", "DlError", "dlopen", "dlclose", "dlsym", "is_loaded", "reopen_noload",
    "dynamic_section", "link_info", "link_map", "load_base", "defining_object",
]

RTLD_LAZY = os.RTLD_LAZY
RTLD_NOW = os.RTLD_NOW
RTLD_NOLOAD = os.RTLD_NOLOAD
RTLD_DEEPBIND = os.RTLD_DEEPBIND
RTLD_GLOBAL = os.RTLD_GLOBAL
RTLD_LOCAL = os.RTLD_LOCAL
RTLD_NODELETE = os.RTLD_NODELETE

_RTLD_DI_LINKMAP = 2
_RTLD_DL_LINKMAP = 2  # dladdr1 flag: extra_info receives the struct link_map *

_libc = ctypes.CDLL(None, use_errno=False)
_dlopen = _libc.dlopen
_dlopen.restype = ctypes.c_void_p
_dlopen.argtypes = (ctypes.c_char_p, ctypes.c_int)
_dlclose = _libc.dlclose
_dlclose.restype = ctypes.c_int
_dlclose.argtypes = (ctypes.c_void_p,)
_dlsym = _libc.dlsym
_dlsym.restype = ctypes.c_void_p
_dlsym.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
_dlerror = _libc.dlerror
_dlerror.restype = ctypes.c_char_p
_dlerror.argtypes = ()
_dlinfo = _libc.dlinfo
_dlinfo.restype = ctypes.c_int
_dlinfo.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)
_dladdr1 = _libc.dladdr1
_dladdr1.restype = ctypes.c_int
_dladdr1.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)


class _DlInfo(ctypes.Structure):
    # Dl_info of <dlfcn.h>
    _fields_ = [
        ("dli_fname", ctypes.c_char_p),
        ("dli_fbase", ctypes.c_void_p),
        ("dli_sname", ctypes.c_char_p),
        ("dli_saddr", ctypes.c_void_p),
    ]


class _LinkMap(ctypes.Structure):
    # The public head of glibc's struct link_map (<link.h>); the rest is private.
    _fields_ = [
        ("l_addr", ctypes.c_size_t),
        ("l_name", ctypes.c_char_p),
        ("l_ld", ctypes.c_void_p),
        ("l_next", ctypes.c_void_p),
        ("l_prev", ctypes.c_void_p),
    ]


class DlError(Exception):
    """A loader call failed; ``args[0]`` is ``dlerror()``'s text.

    Internal: the runtime turns it into a typed :class:`~relib_pure.errors.RelibError`.
    """


def _last_error(default: str) -> str:
    text = _dlerror()
    return text.decode("utf-8", "replace") if text else default


def _encode(path: str) -> bytes:
    return os.fsencode(path)


def dlopen(path: str, flags: int) -> int:
    """``dlopen(path, flags)``; the handle, or :class:`DlError` with dlerror's text."""
    _dlerror()  # clear a stale message from an earlier call on this thread
    handle = _dlopen(_encode(path), flags)
    if not handle:
        raise DlError(_last_error(f"dlopen({path!r}) failed"))
    return int(handle)


def dlclose(handle: int) -> None:
    """``dlclose(handle)``; :class:`DlError` with dlerror's text on failure."""
    _dlerror()
    if _dlclose(handle) != 0:
        raise DlError(_last_error("dlclose failed"))


def dlsym(handle: int, name: str) -> int | None:
    """Address of ``name`` in ``handle``'s scope, or ``None`` when undefined.

    A symbol whose value is legitimately 0 (absolute symbols) also gives ``None``;
    the host never needs those.
    """
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    if b"\0" in raw:
        return None  # C would read only the part before the NUL: another symbol
    _dlerror()
    addr = _dlsym(handle, raw)
    if not addr:
        _dlerror()
        return None
    return int(addr)


def is_loaded(path: str) -> bool:
    """Whether the loader still knows ``path`` (``RTLD_NOLOAD`` probe; takes no reference)."""
    _dlerror()
    handle = _dlopen(_encode(path), RTLD_NOLOAD | RTLD_LAZY)
    if not handle:
        _dlerror()
        return False
    # NOLOAD on a loaded object still counts a reference: give it back.
    _dlclose(handle)
    return True


def reopen_noload(path: str) -> int | None:
    """A new reference to an object the loader still knows, or ``None``.

    Used to finish an unload that ``dlclose`` could not complete earlier
    (pending TLS destructors): the matching ``dlclose`` retries the unmapping.
    """
    _dlerror()
    handle = _dlopen(_encode(path), RTLD_NOLOAD | RTLD_LAZY)
    if not handle:
        _dlerror()
        return None
    return int(handle)


def _link_map_of(handle: int) -> ctypes._Pointer[_LinkMap]:
    lm = ctypes.POINTER(_LinkMap)()
    if _dlinfo(handle, _RTLD_DI_LINKMAP, ctypes.byref(lm)) != 0 or not lm:
        raise DlError(_last_error("dlinfo(RTLD_DI_LINKMAP) failed"))
    return lm


def link_info(handle: int) -> tuple[int, int, int]:
    """``(l_addr, l_ld, link_map address)`` of ``handle``: one ``dlinfo`` for the load
    bias, the mapped ``.dynamic`` and the object's identity."""
    lm = _link_map_of(handle)
    head = lm.contents
    return (int(head.l_addr or 0), int(head.l_ld or 0),
            ctypes.cast(lm, ctypes.c_void_p).value or 0)


def dynamic_section(handle: int) -> int:
    """Address of the object's ``.dynamic`` section (``link_map.l_ld``).

    It lies inside the mapped file, so the ``/proc/self/maps`` line containing
    it names the device and inode the loader actually mapped.
    """
    return int(_link_map_of(handle).contents.l_ld or 0)


def load_base(handle: int) -> int:
    """The object's load bias (``link_map.l_addr``): its symbols sit at base + ``st_value``."""
    return int(_link_map_of(handle).contents.l_addr or 0)


def link_map(handle: int) -> int:
    """Address of the loader's ``struct link_map`` for ``handle`` (the object's identity)."""
    return ctypes.cast(_link_map_of(handle), ctypes.c_void_p).value or 0


def defining_object(address: int) -> tuple[int, str] | None:
    """The loaded object whose mapping contains ``address``: its ``link_map`` and file name.

    ``dlsym(handle, name)`` searches the handle's whole local scope, i.e. the
    library *and its dependencies*; this tells a symbol the library defines
    from one it merely resolves through, say, libc. ``None`` when no loaded
    object contains the address.
    """
    info = _DlInfo()
    extra = ctypes.c_void_p()
    if not _dladdr1(address, ctypes.byref(info), ctypes.byref(extra), _RTLD_DL_LINKMAP):
        return None
    name = info.dli_fname.decode("utf-8", "replace") if info.dli_fname else ""
    return int(extra.value or 0), name


_main_map: int | None = None
_LINK_NEXT = _LinkMap.l_next.offset


def loaded_chain() -> tuple[int, ...]:
    """The ``link_map`` addresses of every object in the main namespace, in load order.

    The loader's own list, walked in place: a cheap, exact key for "which
    libraries are loaded now" (a library reloaded elsewhere gets a new entry).
    """
    global _main_map
    if _main_map is None:
        main = dlopen_self()
        _main_map = link_map(main)
    out: list[int] = []
    address: int | None = _main_map
    read = ctypes.c_void_p.from_address
    while address and len(out) < 100_000:
        out.append(address)
        address = read(address + _LINK_NEXT).value
    return tuple(out)


def dlopen_self() -> int:
    """The handle of the main program (``dlopen(NULL)``)."""
    handle = _dlopen(None, RTLD_NOW)
    if not handle:
        raise DlError(_last_error("dlopen(NULL) failed"))
    return int(handle)


_LINK_NAME = _LinkMap.l_name.offset


def loaded_paths() -> tuple[str, ...]:
    """File names of the objects in the loader's list (the main program's is empty: left out)."""
    read_ptr = ctypes.c_void_p.from_address
    out = []
    for address in loaded_chain():
        name = read_ptr(address + _LINK_NAME).value
        if name:
            text = ctypes.string_at(name)
            if text:
                out.append(os.fsdecode(text))
    return tuple(out)
