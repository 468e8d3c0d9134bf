#!/usr/bin/env python3
"""Mutation fuzzer for ``relib_pure.inspect`` and ``relib_pure.check``.

Each mutant is a built fixture library (``fixtures/**/fixture.json``) changed by
one mutation: bit flips, byte sets, a truncation, a splice of two fixtures, or
overwrites of header and table fields (ELF header, section and program headers,
dynamic entries, symbols, version records; PE headers, section table, export
and import directories) with boundary values. Mutant ``I`` of seed ``S`` is a
pure function of ``(S, I, fixture list)``, so every finding replays exactly.

Mutants run in a worker subprocess, one at a time, with a time bound each.
Outcomes:

- ``ok``: inspection returned a model (which must serialise to UTF-8 JSON);
- ``typed``: an :class:`~relib_pure.errors.InspectionError` naming the file;
- ``crash``: any other exception, a typed error without the file's path, or
  the worker dying (signal, abort);
- ``hang``: no answer within ``--time-limit`` seconds (the worker is killed).

A worker may use at most 1 GiB: its data size is limited (a ``MemoryError``
is a crash) and its peak RSS (``VmHWM``, reset per mutant) is checked after
each one (a crash too). ``--sparse-size`` extends every mutant file to that
size with ``truncate`` (a hole: no disk is used) and lets field overwrites
aim at it, so headers declare tables as big as a 64 GB file.

Usage::

    python3 tools/fuzz_inspect.py --count 20000 --findings-dir /tmp/findings   # the long run
    python3 tools/fuzz_inspect.py --count 300 --seed 7     # a bounded run, as the tests do
    python3 tools/fuzz_inspect.py --count 2000 --sparse-size 64G   # crafted huge sparse files
    python3 tools/fuzz_inspect.py --seed 7 --replay 123 --fixtures c_plain,pe_dll \\
        --save /tmp/mutant.bin                             # reproduce one mutant

Exit status: 0 no crash or hang, 1 at least one crash or hang (each printed
with its reproducer), 2 usage error or no fixture could be built.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import random
import resource
import select
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
if str(REPO) not in sys.path:
    sys.path.insert(1, str(REPO))

from fuzz_fields import STRUCT_CODES, Field, elf_fields, pe_fields, read_field  # noqa: E402

__all__ = ["Field", "read_field", "elf_fields", "pe_fields", "Sample", "Mutant", "Result",
           "load_sample", "make_mutant", "run_one", "build_corpus", "fuzz", "main"]

logger = logging.getLogger("fuzz_inspect")

#: Values that sit on the edges parsers get wrong.
INTERESTING = (0, 1, 2, 3, 4, 7, 8, 0x10, 0x20, 0x40, 0x7F, 0x80, 0xFF, 0x100, 0x1000, 0x7FFF,
               0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 10**9, 24 * 10**9,
               2**63 - 1, 2**63, 2**64 - 1)
#: Mutation kinds with their weights.
KINDS = (("bitflip", 25), ("byteset", 15), ("truncate", 15), ("splice", 10), ("field", 35))
# A worker that uses more than this is a finding (MemoryError, or a peak RSS
# above it), not a dead machine: the bound of issue 11.
WORKER_MEMORY_LIMIT = 1 << 30
DEFAULT_TARGET = "relib_pure.inspection:inspect"
_STARTUP_LIMIT = 120.0
#: Field name prefixes that lead to the relib compilation-info decoding.
_HOT_FIELDS = ("relib_info", "relr.", "basereloc.", "export.")


@dataclass(frozen=True)
class Sample:
    """A fixture's bytes and the fields worth overwriting."""

    name: str
    data: bytes
    fields: tuple[Field, ...]
    suffix: str
    path: str = ""


@dataclass(frozen=True)
class Mutant:
    """Mutant ``index``: ``data`` is fixture ``base`` changed as ``description`` says."""

    index: int
    base: str
    kind: str
    description: str
    data: bytes
    suffix: str


@dataclass
class Result:
    """What running one mutant gave (``outcome``: ok, typed, crash or hang)."""

    index: int
    outcome: str
    detail: str
    base: str = ""
    description: str = ""
    code: str | None = None
    saved: str | None = None



def load_sample(name: str, path: Path) -> Sample:
    """Read a fixture and find its fields."""
    data = path.read_bytes()
    fields = elf_fields(data) or pe_fields(data)
    return Sample(name=name, data=data, fields=fields, suffix=path.suffix or ".bin",
                  path=str(path))


# -- mutations -----------------------------------------------------------------------------


def _position(rng: random.Random, s: Sample) -> int:
    """Mostly near structure (headers, tables) where a flip changes the parse."""
    r = rng.random()
    if r < 0.35:
        return rng.randrange(min(len(s.data), 1024))
    if r < 0.8 and s.fields:
        f = rng.choice(s.fields)
        return min(f.offset + rng.randrange(f.size), len(s.data) - 1)
    return rng.randrange(len(s.data))


def _bitflip(rng: random.Random, s: Sample, corpus: list[Sample]) -> tuple[bytes, str]:
    data = bytearray(s.data)
    flips = []
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        pos, bit = _position(rng, s), rng.randrange(8)
        data[pos] ^= 1 << bit
        flips.append(f"0x{pos:x}.{bit}")
    return bytes(data), "flip " + ",".join(flips)


def _byteset(rng: random.Random, s: Sample, corpus: list[Sample]) -> tuple[bytes, str]:
    data = bytearray(s.data)
    if rng.random() < 0.3:  # a run of bytes: wipes a whole record or string
        pos = _position(rng, s)
        n = min(rng.choice((4, 8, 16, 64, 256)), len(data) - pos)
        value = rng.choice((0x00, 0xFF, 0x41))
        data[pos:pos + n] = bytes([value]) * n
        return bytes(data), f"set 0x{pos:x}+{n} to 0x{value:02x}"
    sets = []
    for _ in range(rng.choice((1, 2, 4))):
        pos = _position(rng, s)
        value = rng.choice((0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        data[pos] = value
        sets.append(f"0x{pos:x}=0x{value:02x}")
    return bytes(data), "set " + ",".join(sets)


def _truncate(rng: random.Random, s: Sample, corpus: list[Sample]) -> tuple[bytes, str]:
    r = rng.random()
    if r < 0.4 and s.fields:
        f = rng.choice(s.fields)
        length = f.offset + rng.randrange(-2, f.size + 2)
    elif r < 0.6:
        length = rng.randrange(min(len(s.data), 4096))
    else:
        length = rng.randrange(len(s.data))
    length = max(0, min(length, len(s.data) - 1))
    return s.data[:length], f"truncate to {length} of {len(s.data)}"


def _splice(rng: random.Random, s: Sample, corpus: list[Sample]) -> tuple[bytes, str]:
    other = rng.choice(corpus)
    cut = _position(rng, s)
    if rng.random() < 0.5 or cut >= len(other.data):
        cut2 = rng.randrange(len(other.data))
    else:
        cut2 = cut  # same offset: the file keeps its layout but changes content
    return s.data[:cut] + other.data[cut2:], f"splice 0x{cut:x} + {other.name}[0x{cut2:x}:]"


def _field(rng: random.Random, s: Sample, corpus: list[Sample],
           size: int = 0) -> tuple[bytes, str]:
    if not s.fields:
        return _bitflip(rng, s, corpus)
    data = bytearray(s.data)
    changes = []
    # a few hundred fields per file: give the relib decoding path its share
    hot = [f for f in s.fields if f.name.startswith(_HOT_FIELDS)]
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        f = rng.choice(hot if hot and rng.random() < 0.25 else s.fields)
        old = read_field(s.data, f)
        r = rng.random()
        if r < 0.5:
            value = rng.choice(INTERESTING)
        elif r < 0.65:
            value = max(size, len(s.data)) + rng.randrange(-16, 17)
        elif r < 0.7 and size > len(s.data):
            value = rng.randrange(len(s.data), size)  # somewhere in the hole
        elif r < 0.85:
            value = old + rng.randrange(-16, 17)
        elif r < 0.92:
            value = old * 2
        else:
            value = rng.getrandbits(8 * f.size)
        value &= (1 << (8 * f.size)) - 1
        struct.pack_into(f.endian + STRUCT_CODES[f.size], data, f.offset, value)
        changes.append(f"{f.name}=0x{value:x} (was 0x{old:x})")
    return bytes(data), "field " + ", ".join(changes)


_MUTATORS: dict[str, Callable[[random.Random, Sample, list[Sample]], tuple[bytes, str]]] = {
    "bitflip": _bitflip, "byteset": _byteset, "truncate": _truncate, "splice": _splice,
    "field": _field,
}


def make_mutant(corpus: list[Sample], seed: int, index: int, sparse_size: int = 0) -> Mutant:
    """Mutant ``index`` of ``seed``: deterministic for the same corpus (and
    ``sparse_size``, the size the file is extended to; 0: not extended)."""
    rng = random.Random(f"relib-pure-fuzz/{seed}/{index}" + (f"/{sparse_size}" if sparse_size
                                                               else ""))
    sample = corpus[rng.randrange(len(corpus))]
    kind = rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
    for _ in range(8):
        if kind == "field":
            data, description = _field(rng, sample, corpus, sparse_size)
        else:
            data, description = _MUTATORS[kind](rng, sample, corpus)
        if data != sample.data:  # e.g. a field set to its own value: draw again
            break
    return Mutant(index=index, base=sample.name, kind=kind, description=description, data=data,
                  suffix=sample.suffix)


# -- running one mutant --------------------------------------------------------------------


def _load_target(spec: str) -> Callable[[str], Any]:
    module, _, name = spec.partition(":")
    func = getattr(importlib.import_module(module), name)
    if not callable(func):
        raise SystemExit(f"target {spec} is not callable")
    return func  # type: ignore[no-any-return]


def _load_check() -> Callable[[Any], Any]:
    """``relib_pure.check`` with its default policy (resolvability included)."""
    from relib_pure.compat import Policy, check

    return lambda info: check(info, Policy())


def run_one(target: Callable[[str], Any], check: Callable[[Any], Any] | None,
            path: str) -> tuple[str, str, str | None]:
    """(outcome, detail, error code) of inspecting (and checking) ``path``."""
    from relib_pure.errors import InspectionError, RelibError

    try:
        info = target(path)
    except InspectionError as e:
        if e.path != path:
            return "crash", f"InspectionError without the file's path: {e}", e.code
        return "typed", e.message, e.code
    except Exception as e:  # noqa: BLE001 - anything else is the finding
        return "crash", _describe(e), getattr(e, "code", None)
    to_dict = getattr(info, "to_dict", None)
    if to_dict is not None:
        # what `inspect --json` prints must exist for every model the reader returns
        try:
            json.dumps(to_dict(), allow_nan=False, ensure_ascii=False).encode("utf-8")
        except Exception as e:  # noqa: BLE001
            return "crash", "result cannot be written as JSON: " + _describe(e), None
    if check is None:
        return "ok", "", None
    try:
        check(info)
    except RelibError as e:
        return "typed", f"check: {e.message}", e.code
    except Exception as e:  # noqa: BLE001
        return "crash", "check: " + _describe(e), None
    return "ok", "", None


def _describe(e: BaseException) -> str:
    frames = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(e).__name__}: {e}{where}"[:500]


def build_corpus(names: list[str] | None) -> tuple[list[Sample], dict[str, str]]:
    """Build the fixtures (cached) and load them, sorted by name."""
    import build_fixtures

    chosen = sorted(names) if names else sorted(build_fixtures.variants())
    samples: list[Sample] = []
    missing: dict[str, str] = {}
    for name in chosen:
        try:
            samples.append(load_sample(name, build_fixtures.build(name).resolve()))
        except build_fixtures.FixtureUnavailable as e:
            missing[name] = str(e)
    return samples, missing


def worker_main(args: argparse.Namespace) -> int:
    """Serve mutant indexes from stdin, one JSON result line each on the protocol pipe."""
    try:
        # the data size, not the address space: mapping a 64 GB file read-only
        # costs address space only, and a reader may do that
        resource.setrlimit(resource.RLIMIT_DATA, (WORKER_MEMORY_LIMIT, WORKER_MEMORY_LIMIT))
    except (ValueError, OSError):
        pass
    # The protocol keeps the original stdout; anything the target prints, from
    # Python or C, goes to stderr instead of into the result lines.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.disable(logging.CRITICAL)  # readers may log warnings on hostile input
    # the parent already built the fixtures: load them straight from its paths
    corpus = [load_sample(name, Path(path)) for name, path in
              (item.split("=", 1) for item in args.worker_paths.split(os.pathsep))]
    target = _load_target(args.target)
    check = None if args.no_check else _load_check()
    protocol.write("ready\n")
    # the parent owns (and removes) the folder: a killed worker leaves nothing behind
    stem = os.path.join(args.worker_dir, f"mutant-{os.getpid()}")
    for line in sys.stdin:
        index = int(line)
        mutant = make_mutant(corpus, args.seed, index, args.sparse_size)
        path = stem + mutant.suffix
        write_mutant(path, mutant, args.sparse_size)
        _reset_peak_rss()
        outcome, detail, code = run_one(target, check, path)
        peak = _peak_rss()
        if peak > WORKER_MEMORY_LIMIT and outcome != "crash":
            outcome, detail = "crash", f"peak RSS {peak >> 20} MiB (bound " \
                f"{WORKER_MEMORY_LIMIT >> 20} MiB); {outcome}: {detail}"
        os.unlink(path)
        protocol.write(json.dumps({"index": index, "outcome": outcome, "detail": detail,
                                   "code": code, "base": mutant.base,
                                   "description": mutant.description}) + "\n")
    return 0


def write_mutant(path: str, mutant: Mutant, sparse_size: int) -> None:
    """Write ``mutant`` to ``path``, extended to ``sparse_size`` bytes with a hole."""
    with open(path, "wb") as f:
        f.write(mutant.data)
        if sparse_size > len(mutant.data):
            f.truncate(sparse_size)


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _peak_rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# -- the driver ----------------------------------------------------------------------------


@dataclass
class _Worker:
    proc: subprocess.Popen[str]
    index: int | None = None
    deadline: float = 0.0

    @property
    def out(self) -> IO[str]:
        assert self.proc.stdout is not None  # always a pipe
        return self.proc.stdout

    @property
    def inp(self) -> IO[str]:
        assert self.proc.stdin is not None
        return self.proc.stdin


@dataclass
class Summary:
    """Every mutant's result, in completion order."""

    results: list[Result] = field(default_factory=list)

    @property
    def findings(self) -> list[Result]:
        return [r for r in self.results if r.outcome in ("crash", "hang")]


def _spawn(args: argparse.Namespace) -> _Worker:
    paths = os.pathsep.join(f"{name}={path}" for name, path in args.fixture_paths)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", paths, "--worker-dir",
           args.worker_dir, "--seed", str(args.seed), "--target", args.target,
           "--sparse-size", str(args.sparse_size)]
    if args.no_check:
        cmd.append("--no-check")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            bufsize=1, env=env)
    worker = _Worker(proc)
    # start-up (imports, fixture cache look-ups) must not count against a mutant
    ready, _, _ = select.select([worker.out], [], [], _STARTUP_LIMIT)
    line = worker.out.readline() if ready else ""
    if line != "ready\n":
        _stop(worker)
        raise RuntimeError(f"fuzz worker did not start: {line!r}")
    return worker


def _stop(worker: _Worker) -> None:
    if worker.proc.poll() is None:
        worker.proc.kill()
    worker.proc.wait()
    for stream in (worker.proc.stdin, worker.proc.stdout):
        if stream is not None:
            stream.close()


def fuzz(args: argparse.Namespace, corpus: list[Sample]) -> Summary:
    """Run mutants ``start .. start+count`` on ``jobs`` workers; kill and replace
    a worker whose mutant overruns the time limit or that dies."""
    summary = Summary()
    pending = list(range(args.start, args.start + args.count))
    pending.reverse()
    workers = [_spawn(args) for _ in range(max(1, args.jobs))]
    try:
        while pending or any(w.index is not None for w in workers):
            now = time.monotonic()
            for w in workers:
                if w.index is None and pending:
                    w.index = pending.pop()
                    w.deadline = now + args.time_limit
                    try:
                        w.inp.write(f"{w.index}\n")
                        w.inp.flush()
                    except BrokenPipeError:
                        pass  # reported as a dead worker below
            busy = [w for w in workers if w.index is not None]
            timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready, _, _ = select.select([w.out for w in busy], [], [], timeout)
            for i, w in enumerate(workers):
                if w.index is None:
                    continue
                if w.out in ready:
                    line = w.out.readline()
                    if line:
                        d = json.loads(line)
                        summary.results.append(Result(d["index"], d["outcome"], d["detail"],
                                                      d["base"], d["description"], d["code"]))
                        w.index = None
                        w.deadline = 0.0
                        continue
                    w.proc.wait()
                    summary.results.append(Result(
                        w.index, "crash", f"worker died with status {w.proc.returncode}"))
                elif time.monotonic() >= w.deadline:
                    summary.results.append(Result(
                        w.index, "hang", f"no answer within {args.time_limit:g} s"))
                else:
                    continue
                _stop(w)
                workers[i] = _spawn(args)
    finally:
        for w in workers:
            _stop(w)
    _describe_findings(summary, corpus, args.seed, args.sparse_size)
    return summary


def _describe_findings(summary: Summary, corpus: list[Sample], seed: int,
                       sparse_size: int = 0) -> None:
    """Hangs and dead workers carry no description: regenerate it here."""
    for r in summary.results:
        if not r.description:
            m = make_mutant(corpus, seed, r.index, sparse_size)
            r.base, r.description = m.base, m.description


def report(summary: Summary, args: argparse.Namespace, elapsed: float,
           out: Any = sys.stdout) -> None:
    """Print the counts, then each finding with its reproducer."""
    outcomes = Counter(r.outcome for r in summary.results)
    codes = Counter(r.code for r in summary.results if r.outcome == "typed")
    bases = Counter(r.base for r in summary.results)
    print(f"fuzz_inspect: seed {args.seed}, mutants {args.start}..{args.start + args.count - 1}"
          f" over {len(args.fixtures)} fixtures, {elapsed:.1f} s"
          + (f", files extended to {args.sparse_size} bytes" if args.sparse_size else ""),
          file=out)
    print("outcomes: " + ", ".join(f"{k} {outcomes.get(k, 0)}"
                                   for k in ("ok", "typed", "crash", "hang")), file=out)
    print("error codes: " + ", ".join(f"{c} {n}" for c, n in codes.most_common()), file=out)
    print("fixtures: " + ", ".join(f"{b} {n}" for b, n in sorted(bases.items())), file=out)
    for r in summary.findings:
        print(f"\n{r.outcome.upper()} mutant {r.index} of {r.base}: {r.description}", file=out)
        print(f"  {r.detail}", file=out)
        print(f"  reproduce: python3 tools/fuzz_inspect.py --seed {args.seed} --replay {r.index}"
              f" --fixtures {','.join(args.fixtures)} --save /tmp/mutant{r.index}"
              + (f" --sparse-size {args.sparse_size}" if args.sparse_size else ""), file=out)
        if r.saved:
            print(f"  mutant saved: {r.saved}", file=out)


def save_findings(summary: Summary, corpus: list[Sample], seed: int, folder: Path,
                  sparse_size: int = 0) -> None:
    """Write each crashing or hanging mutant to ``folder``: a rebuilt fixture
    (a new timestamp, another compiler) would change what the replay command makes."""
    folder.mkdir(parents=True, exist_ok=True)
    for r in summary.findings:
        mutant = make_mutant(corpus, seed, r.index, sparse_size)
        target = folder / f"seed{seed}-mutant{r.index}-{mutant.base}{mutant.suffix}"
        write_mutant(str(target), mutant, sparse_size)
        r.saved = str(target)


def replay(args: argparse.Namespace, corpus: list[Sample]) -> int:
    """Rebuild one mutant, optionally save it, and run it here, in this process."""
    mutant = make_mutant(corpus, args.seed, args.replay, args.sparse_size)
    print(f"mutant {mutant.index} of {mutant.base}: {mutant.description}")
    with tempfile.TemporaryDirectory(prefix="relib-fuzz-") as tmp:
        path = args.save or os.path.join(tmp, f"mutant{mutant.suffix}")
        write_mutant(path, mutant, args.sparse_size)
        if args.save:
            print(f"saved {len(mutant.data)} bytes to {path}")
        check = None if args.no_check else _load_check()
        outcome, detail, code = run_one(_load_target(args.target), check, path)
    print(f"{outcome}: {detail}" + (f" [{code}]" if code else ""))
    return 1 if outcome in ("crash", "hang") else 0


def _size(text: str) -> int:
    """``64G``, ``512M``, ``4096`` -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if text[-1:].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=500, help="number of mutants (default 500)")
    ap.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    ap.add_argument("--start", type=int, default=0, help="first mutant index (default 0)")
    ap.add_argument("--time-limit", type=float, default=10.0,
                    help="seconds one mutant may take before it counts as a hang (default 10)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--fixtures", type=lambda s: [n for n in s.split(",") if n], default=None,
                    help="comma-separated fixture names (default: every buildable fixture)")
    ap.add_argument("--target", default=DEFAULT_TARGET,
                    help=f"MODULE:FUNCTION called with the mutant's path (default "
                         f"{DEFAULT_TARGET})")
    ap.add_argument("--no-check", action="store_true",
                    help="do not run relib_pure.check on mutants that inspect")
    ap.add_argument("--replay", type=int, metavar="INDEX",
                    help="rebuild mutant INDEX, run it in this process and report")
    ap.add_argument("--save", metavar="PATH", help="with --replay: write the mutant there")
    ap.add_argument("--findings-dir", metavar="DIR", type=Path,
                    help="write every crashing or hanging mutant into DIR")
    ap.add_argument("--sparse-size", type=_size, default=0, metavar="BYTES",
                    help="extend every mutant to BYTES (e.g. 64G) with a hole, and aim field "
                         "overwrites at that size")
    ap.add_argument("--worker", dest="worker_paths", help=argparse.SUPPRESS)
    ap.add_argument("--worker-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.count < 0 or args.time_limit <= 0 or args.jobs < 1:
        ap.error("--count must be >= 0, --time-limit > 0, --jobs >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the fuzzer, a replay or (internally) a worker; returns the exit status."""
    args = parse_args(argv)
    if args.worker_paths:
        return worker_main(args)
    corpus, missing = build_corpus(args.fixtures)
    for name, why in missing.items():
        print(f"fuzz_inspect: skipping {name}: {why}", file=sys.stderr)
    if not corpus:
        print("fuzz_inspect: no fixture could be built", file=sys.stderr)
        return 2
    args.fixtures = [s.name for s in corpus]
    args.fixture_paths = [(s.name, s.path) for s in corpus]
    if args.replay is not None:
        return replay(args, corpus)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="relib-fuzz-") as tmp:
            args.worker_dir = tmp
            summary = fuzz(args, corpus)
    except RuntimeError as e:  # a worker that cannot even start: the setup is broken
        print(f"fuzz_inspect: {e}", file=sys.stderr)
        return 2
    if args.findings_dir is not None:
        save_findings(summary, corpus, args.seed, args.findings_dir, args.sparse_size)
    report(summary, args, time.monotonic() - started)
    return 1 if summary.findings else 0


if __name__ == "__main__":
    sys.exit(main())
