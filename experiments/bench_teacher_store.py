"""Teacher store at scale: memory per rank and lookup cost, the memory-mapped store against the in-RAM cache.

A synthetic store of n texts x D-d fp16 vectors (default 2560-d, Qwen3-Embedding-4B's; parts of 1,024
rows as a fill writes them, then the merged index) grows through the ``--n`` scales; at each, a fresh
process (one training rank) opens it read-only and reports:

- ``open s``: open time (every part's sha256 verified: linear in the store's size);
- RSS after opening, after attaching all n texts (``locate``: the (n, 2) int32 locations the tables
  keep) and after 2 x ``--batches`` lookups of random batches of ``--batch`` texts (key hashing,
  searchsorted, gathering the rows to float32; the first half a warm-up that maps the parts): ``VmRSS`` split into ``RssAnon`` (private to the rank) and ``RssFile``
  (mapped store pages: page cache, shared by every rank on the node and reclaimable);
- ``us/text``: the lookup cost per text, wall and CPU time (the CPU time is the figure to compare on a
  shared machine).

The same run measures the alternative, an in-RAM cache (shards loaded whole into RAM, a dict index, a
per-text loop and a float32 copy of every table's vectors kept by ``attach_teacher``) at
``--legacy-n`` texts, so the ratio is on one machine. The rows read back are checked against the
values written (two components of each synthetic row encode its number).

    python experiments/bench_teacher_store.py [--n 100000 300000 1000000] [--legacy-n 100000] [--dim 2560]
    python experiments/bench_teacher_store.py --smoke      # seconds: small n and dim

Prints a table and writes JSON (``--out``). Needs n x D x 2 bytes of free disk under ``--root``
(5.1 GB at 1M x 2560), checked first.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jina5.teacher.cache import keys_of, text_key
from jina5.teacher.store import TeacherStore

META = {"fingerprint": "0" * 64, "instruction": "", "source": "synthetic"}
PART_ROWS = 1024  # a fill's chunk (TeacherCache.shard_size)


def text(i: int) -> str:
    return f"synthetic text number {i}"


def rows(lo: int, hi: int, dim: int, pool: np.ndarray) -> np.ndarray:
    """(hi - lo, dim) fp16: pool rows, with components 0 and 1 = i // 2048, i % 2048 (exact in fp16)."""
    i = np.arange(lo, hi)
    out = pool[i % len(pool)].copy()
    out[:, 0], out[:, 1] = i // 2048, i % 2048
    return out


def rss() -> dict[str, float]:
    """VmRSS, RssAnon, RssFile of this process in MiB (/proc/self/status)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024
    return out


def grow(store: TeacherStore, lo: int, hi: int, dim: int) -> None:
    pool = np.random.default_rng(0).standard_normal((4096, dim)).astype(np.float16)
    for a in range(lo, hi, PART_ROWS):
        b = min(a + PART_ROWS, hi)
        store.write_part(keys_of([text(i) for i in range(a, b)]), rows(a, b, dim, pool))
    store.write_index()


def _check(got: np.ndarray, ids: np.ndarray) -> None:
    want = np.stack([ids // 2048, ids % 2048], 1).astype(np.float32)
    if not np.array_equal(got[:, :2], want):
        raise AssertionError("a lookup returned another text's row")


def timed_lookups(
    lookup: Callable[[list[str]], np.ndarray], n: int, batches: int, batch: int, rng: np.random.Generator
) -> tuple[float, float]:
    """(wall, CPU) microseconds per text of ``lookup`` over ``batches`` random batches of ``batch`` of the
    n texts; the last batch's rows are checked against the texts asked for."""
    ids = [rng.integers(0, n, batch) for _ in range(batches)]
    start, cpu = time.perf_counter(), time.process_time()
    for b in ids:
        got = lookup([text(i) for i in b])
    per_text = (time.perf_counter() - start) / (batches * batch) * 1e6
    cpu_per_text = (time.process_time() - cpu) / (batches * batch) * 1e6
    _check(got, ids[-1])
    return per_text, cpu_per_text


def record(
    impl: str,
    n: int,
    opened: float,
    timings: tuple[float, float],
    base: dict,
    after_open: dict,
    after_attach: dict,
) -> dict:
    """One row of the report: open time, lookup cost and the RSS readings (after the lookups: now)."""
    return {
        "impl": impl,
        "n": n,
        "open_s": opened,
        "us_per_text": timings[0],
        "cpu_us_per_text": timings[1],
        "rss_base": base,
        "rss_open": after_open,
        "rss_attach": after_attach,
        "rss_lookups": rss(),
    }


def measure_store(path: str, n: int, dim: int, batches: int, batch: int, out: multiprocessing.Queue) -> None:
    """One read-only rank: open, attach all n texts, random lookups (run in a fresh process)."""
    base = rss()
    start = time.perf_counter()
    store = TeacherStore(path, {**META, "dim": dim}, read_only=True)
    opened = time.perf_counter() - start
    after_open = rss()
    locs = [store.locate(keys_of([text(i) for i in range(a, min(a + 65536, n))])) for a in range(0, n, 65536)]
    loc = np.concatenate(locs)  # what the tables keep (TeacherRows)
    after_attach = rss()
    assert loc.shape == (n, 2)

    def lookup(texts: list[str]) -> np.ndarray:
        return store.gather(store.locate(keys_of(texts)))

    rng = np.random.default_rng(1)
    for b in [rng.integers(0, n, batch) for _ in range(batches)]:  # warm-up: first touches map the parts
        lookup([text(i) for i in b])
    timings = timed_lookups(lookup, n, batches, batch, rng)
    out.put(record("store", n, opened, timings, base, after_open, after_attach))


def write_legacy(root: Path, n: int, dim: int) -> None:
    """The in-RAM cache's shards (shard-<id>.npz: keys (m, 20) uint8, emb fp16, sha256 checksum)."""
    import hashlib

    pool = np.random.default_rng(0).standard_normal((4096, dim)).astype(np.float16)
    for a in range(0, n, PART_ROWS):
        b = min(a + PART_ROWS, n)
        keys = np.frombuffer(b"".join(text_key(text(i)) for i in range(a, b)), np.uint8).reshape(-1, 20)
        emb = rows(a, b, dim, pool)
        checksum = np.frombuffer(hashlib.sha256(keys.tobytes() + emb.tobytes()).digest(), np.uint8)
        np.savez(root / f"shard-{a:016x}.npz", keys=keys, emb=emb, checksum=checksum)


def measure_legacy(path: str, n: int, dim: int, batches: int, batch: int, out: multiprocessing.Queue) -> None:
    """The in-RAM cache, for comparison: every shard loaded and verified, a dict
    from key to (shard, row), ``get`` a per-text loop into float32; tables kept ``get(all)``."""
    import hashlib

    base = rss()
    start = time.perf_counter()
    index: dict[bytes, tuple[int, int]] = {}
    shards = []
    for f in sorted(Path(path).glob("shard-*.npz")):
        with np.load(f) as z:
            keys, emb, checksum = z["keys"], z["emb"], bytes(z["checksum"])
        assert hashlib.sha256(keys.tobytes() + emb.tobytes()).digest() == checksum
        for row, key in enumerate(keys):
            index[key.tobytes()] = (len(shards), row)
        shards.append(emb)
    opened = time.perf_counter() - start
    after_open = rss()

    def get(texts: list[str]) -> np.ndarray:
        vecs = np.empty((len(texts), dim), dtype=np.float32)
        for i, t in enumerate(texts):
            s, r = index[text_key(t)]
            vecs[i] = shards[s][r]
        return vecs

    table = get([text(i) for i in range(n)])  # attach_teacher: a float32 copy per table
    after_attach = rss()
    rng = np.random.default_rng(1)
    assert table.shape == (n, dim)
    timings = timed_lookups(get, n, batches, batch, rng)
    out.put(record("in-RAM cache (before)", n, opened, timings, base, after_open, after_attach))


def _report(target, args: tuple, queue: multiprocessing.Queue) -> None:
    try:
        target(*args, queue)
    except BaseException as err:  # the parent raises it: a failed check must not hang the benchmark
        queue.put({"error": f"{type(err).__name__}: {err}"})


def in_fresh_process(target, *args) -> dict:
    """``target(*args, queue)`` in a spawned process (its own RSS); returns what it put."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_report, args=(target, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"{target.__name__}: {result['error']}")
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, nargs="+", default=[100_000, 300_000, 1_000_000], help="store sizes, ascending"
    )
    parser.add_argument("--legacy-n", type=int, default=100_000, help="texts for the in-RAM cache (0: skip)")
    parser.add_argument("--dim", type=int, default=2560)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--root", type=Path, default=None, help="where the stores are written (default: a temp dir)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/bench_teacher_store.json"))
    parser.add_argument("--smoke", action="store_true", help="n 3000 6000, legacy 3000, dim 64, 20 batches")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.legacy_n, args.dim, args.batches = [3000, 6000], 3000, 64, 20
    if sorted(args.n) != args.n:
        parser.error("--n must be ascending (the store grows through them)")
    tmp = Path(tempfile.mkdtemp(prefix="teacher-store-bench-", dir=args.root))
    need = (args.n[-1] + args.legacy_n) * args.dim * 2 * 1.05
    free = shutil.disk_usage(tmp).free
    if need > free:
        shutil.rmtree(tmp)
        parser.error(
            f"--n {args.n[-1]} x --dim {args.dim} needs {need / 1e9:.1f} GB, {tmp.parent} has {free / 1e9:.1f} GB free: lower --n"
        )
    results = []
    try:
        if args.legacy_n:
            (tmp / "legacy").mkdir()
            write_legacy(tmp / "legacy", args.legacy_n, args.dim)
            results.append(
                in_fresh_process(
                    measure_legacy, str(tmp / "legacy"), args.legacy_n, args.dim, args.batches, args.batch
                )
            )
            shutil.rmtree(tmp / "legacy")
        store = TeacherStore(tmp / "store", {**META, "dim": args.dim})
        have = 0
        for n in args.n:
            start = time.perf_counter()
            grow(store, have, n, args.dim)
            built = time.perf_counter() - start
            have = n
            result = in_fresh_process(
                measure_store, str(tmp / "store"), n, args.dim, args.batches, args.batch
            )
            results.append({**result, "grow_s": built})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{'impl':<24}{'n':>9}{'open s':>8}{'us/text':>9}{'cpu us':>8}  RSS MiB over base: anon (file) after"
    )
    print(f"{'':<24}{'':>9}{'':>8}{'':>9}{'':>8}  {'open':>16}{'attach':>16}{'lookups':>16}")
    for r in results:
        cells = [
            f"{r[k]['RssAnon'] - r['rss_base']['RssAnon']:8.1f} ({r[k]['RssFile'] - r['rss_base']['RssFile']:5.0f})"
            for k in ("rss_open", "rss_attach", "rss_lookups")
        ]
        print(
            f"{r['impl']:<24}{r['n']:>9}{r['open_s']:>8.2f}{r['us_per_text']:>9.2f}{r['cpu_us_per_text']:>8.2f}  {''.join(f'{c:>16}' for c in cells)}"
        )
    record = {"dim": args.dim, "batch": args.batch, "batches": args.batches, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")
    return record


if __name__ == "__main__":
    main()
