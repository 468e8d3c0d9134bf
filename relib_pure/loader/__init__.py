"""Emulating glibc's dynamic loader without loading anything.

:mod:`.search` finds a NEEDED library where ``ld.so`` would (RPATH, RUNPATH,
``$LD_LIBRARY_PATH``, :mod:`.ldcache`, default directories, hwcaps);
:mod:`.resolve` builds the NEEDED closure of a library and checks its
undefined symbols and versions against it, as ``ldd -r`` reports them. The
judging (``resolve.*`` findings) is :mod:`relib_pure.compat.resolve`'s.
"""
