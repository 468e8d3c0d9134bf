"""ELF numbers the readers need, with the names relib_pure reports for them.

Kept as plain integers (not pyelftools' strings) so comparisons cannot be
silently wrong through a misspelt name.
"""

from __future__ import annotations

# e_type
ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4
ELF_TYPES = {0: "NONE", ET_REL: "REL", ET_EXEC: "EXEC", ET_DYN: "DYN", ET_CORE: "CORE"}

# e_machine -> normalised architecture name (as platform.machine() spells it)
MACHINES: dict[int, str] = {
    2: "sparc", 3: "i386", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390x", 40: "arm",
    43: "sparc64", 62: "x86_64", 183: "aarch64", 243: "riscv", 258: "loongarch",
}
#: machines whose name gains the bitness (riscv64, mips64...)
MACHINES_WITH_BITS = frozenset({8, 243, 258})

# EI_OSABI -> os name; System V (0) is what Linux toolchains write.
OS_ABIS = {0: "linux", 3: "linux", 6: "solaris", 9: "freebsd", 12: "openbsd", 2: "netbsd"}

# program header types
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE, PT_TLS = 1, 2, 3, 4, 7
PT_GNU_STACK = 0x6474E551

#: what registers a thread_local destructor: glibc's entry point (Rust's std
#: calls it directly) and libstdc++'s wrapper (C++ thread_local), which ends
#: in the same glibc call with the library's __dso_handle
THREAD_ATEXIT_SYMBOLS = frozenset({"__cxa_thread_atexit_impl", "__cxa_thread_atexit"})
# p_flags
PF_X, PF_W, PF_R = 1, 2, 4

# section header types
SHT_NOBITS = 8
SHT_DYNSYM = 11
SHT_DYNAMIC = 6
SHT_GNU_VERSYM = 0x6FFFFFFF

# dynamic tags
DT_NULL = 0
DT_NEEDED = 1
DT_HASH = 4
DT_STRTAB = 5
DT_SYMTAB = 6
DT_RELA = 7
DT_RELASZ = 8
DT_RELAENT = 9
DT_STRSZ = 10
DT_SYMENT = 11
DT_INIT = 12
DT_FINI = 13
DT_SONAME = 14
DT_RPATH = 15
DT_REL = 17
DT_RELSZ = 18
DT_RELENT = 19
DT_TEXTREL = 22
DT_INIT_ARRAY = 25
DT_FINI_ARRAY = 26
DT_INIT_ARRAYSZ = 27
DT_FINI_ARRAYSZ = 28
DT_RUNPATH = 29
DT_FLAGS = 30
DT_RELRSZ = 35
DT_RELR = 36
DT_RELRENT = 37
DT_GNU_HASH = 0x6FFFFEF5
DT_VERSYM = 0x6FFFFFF0
DT_RELACOUNT = 0x6FFFFFF9
DT_RELCOUNT = 0x6FFFFFFA
DT_FLAGS_1 = 0x6FFFFFFB
DT_VERDEF = 0x6FFFFFFC
DT_VERDEFNUM = 0x6FFFFFFD
DT_VERNEED = 0x6FFFFFFE
DT_VERNEEDNUM = 0x6FFFFFFF

# DT_FLAGS bits (names as readelf prints them)
DF_TEXTREL = 0x4
DF_STATIC_TLS = 0x10
DT_FLAGS_NAMES = ((0x1, "ORIGIN"), (0x2, "SYMBOLIC"), (0x4, "TEXTREL"), (0x8, "BIND_NOW"),
                  (0x10, "STATIC_TLS"))

# DT_FLAGS_1 bits (names as readelf prints them)
DF_1_NODELETE = 0x8
DT_FLAGS_1_NAMES = (
    (0x1, "NOW"), (0x2, "GLOBAL"), (0x4, "GROUP"), (0x8, "NODELETE"), (0x10, "LOADFLTR"),
    (0x20, "INITFIRST"), (0x40, "NOOPEN"), (0x80, "ORIGIN"), (0x100, "DIRECT"),
    (0x200, "TRANS"), (0x400, "INTERPOSE"), (0x800, "NODEFLIB"), (0x1000, "NODUMP"),
    (0x2000, "CONFALT"), (0x4000, "ENDFILTEE"), (0x8000, "DISPRELDNE"),
    (0x10000, "DISPRELPND"), (0x20000, "NODIRECT"), (0x40000, "IGNMULDEF"),
    (0x80000, "NOKSYMS"), (0x100000, "NOHDR"), (0x200000, "EDITED"), (0x400000, "NORELOC"),
    (0x800000, "SYMINTPOSE"), (0x1000000, "GLOBAUDIT"), (0x2000000, "SINGLETON"),
    (0x4000000, "STUB"), (0x8000000, "PIE"), (0x10000000, "KMOD"),
    (0x20000000, "WEAKFILTER"), (0x40000000, "NOCOMMON"),
)

# symbols
SHN_UNDEF = 0
STB_LOCAL, STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 0, 1, 2, 10
BINDINGS = {STB_GLOBAL: "global", STB_WEAK: "weak", STB_GNU_UNIQUE: "gnu_unique"}
SYMBOL_KINDS = {0: "notype", 1: "object", 2: "func", 5: "common", 6: "tls", 10: "ifunc"}
STV_DEFAULT, STV_PROTECTED = 0, 3
VISIBILITIES = {STV_DEFAULT: "default", STV_PROTECTED: "protected"}
VERSYM_HIDDEN = 0x8000
VER_FLG_BASE = 0x1

# notes
NT_GNU_BUILD_ID = 3

# relocation types per machine: (RELATIVE, initial-exec TLS types)
RELATIVE_TYPES = {62: 8, 183: 1027, 3: 8, 40: 23, 243: 3, 21: 22}
STATIC_TLS_TYPES: dict[int, frozenset[int]] = {
    62: frozenset({18, 23}),          # R_X86_64_TPOFF64, R_X86_64_TPOFF32
    183: frozenset({1030}),           # R_AARCH64_TLS_TPREL64
    3: frozenset({14, 37}),           # R_386_TLS_TPOFF, R_386_TLS_TPOFF32
    40: frozenset({19}),              # R_ARM_TLS_TPOFF32
    243: frozenset({10, 11}),         # R_RISCV_TLS_TPREL32/64
}


def flag_names(value: int, table: tuple[tuple[int, str], ...]) -> tuple[str, ...]:
    """Names of the bits set in ``value``; unknown bits as a hex remainder."""
    names = [name for bit, name in table if value & bit]
    rest = value & ~sum(bit for bit, _ in table)
    if rest:
        names.append(f"{rest:#x}")
    return tuple(names)
