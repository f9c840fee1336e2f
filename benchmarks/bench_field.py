"""Benchmark of the tiered field against numpy.memmap and os.pread on the same chunk files.

Run:  python benchmarks/bench_field.py [--mb 256] [--dir DIR] [--seed 0]

Prints, in one run:
  * the design's petabyte example (86e9 x 1000 float32 = 344 TB logical): create time,
    disk usage, read-back of neuron 42e9;
  * a table of per-access latency / throughput for hot single get, warm (prefetched)
    strided get, cold random get, 1k-element batch get and sequential scan, for the
    field, plain numpy.memmap and os.pread over the very same chunk files, with ratios;
  * the targets (cold random <= 1.5x os.pread, scan >= 70% of raw read, strided scans
    >= 90% hot/warm after warm-up) and whether this run met them.

"Cold" measurements are preceded by fdatasync + posix_fadvise(POSIX_FADV_DONTNEED) on
every chunk file (no memory map of them is alive at that moment, since mapped pages are
not dropped), so they read from the storage device, not from the OS page cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from proxima.golden import field as F
from proxima.golden.field.format import CHUNK_HDR_BYTES

COLS = 256  # float32 per row: 1 KiB rows


def _tqdm(it, **kw):
    try:
        from tqdm import tqdm
        return tqdm(it, file=sys.stderr, leave=False, **kw)
    except ImportError:  # pragma: no cover
        return it


def petabyte(root: str) -> dict:
    t0 = time.perf_counter()
    f = F.create(os.path.join(root, "brain"), (86_000_000_000, 1000), "float32")
    t_create = time.perf_counter() - t0
    row = np.arange(1000, dtype=np.float32) * 0.5
    f[42_000_000_000] = row
    f.flush()
    t_total = time.perf_counter() - t0
    f.close()
    g = F.open(os.path.join(root, "brain"), verify=True)
    ok = bool(np.array_equal(g.get(42_000_000_000), row)) and not g.get(41_999_999_999).any()
    out = dict(logical_tb=g.nbytes / 1e12, create_s=t_create, create_write_flush_s=t_total,
               disk_bytes=g.disk_usage(), chunk_files=len(g.chunk_ids()), readback_ok=ok)
    g.close()
    shutil.rmtree(os.path.join(root, "brain"))
    return out


def build(root: str, mb: int) -> F.Field:
    rows = (mb << 20) // (COLS * 4)
    f = F.create(os.path.join(root, "bench"), (rows, COLS), "float32", chunk_bytes=8 << 20)
    step = f.chunk_rows
    for r in _tqdm(range(0, rows, step), desc="writing bench field", unit="chunk"):
        n = min(step, rows - r)
        flat = np.arange(r * COLS, (r + n) * COLS, dtype=np.int64)
        f.batch_set(slice(r, r + n), (flat % 1_000_003).astype(np.float32).reshape(n, COLS))
    f.close()
    return f


def expected(flat):
    return (np.asarray(flat, np.int64) % 1_000_003).astype(np.float32)


class Baselines:
    """os.pread and numpy.memmap over the field's own chunk files."""

    def __init__(self, f: F.Field) -> None:
        self.f = f
        self.ce = f.chunk_elems
        self.paths = [str(f.chunk_file(c)) for c in range(f.n_chunks)]
        self.fds = [os.open(p, os.O_RDONLY) for p in self.paths]
        self.mms = None

    def open_mm(self):
        self.mms = [np.memmap(p, np.float32, "r", offset=CHUNK_HDR_BYTES,
                              shape=(self.f._chunk_elems_of(c),))
                    for c, p in enumerate(self.paths)]

    def close_mm(self):
        if self.mms is not None:
            for m in self.mms:
                m._mmap.close()
        self.mms = None

    def pread(self, e):
        c, off = divmod(e, self.ce)
        return np.frombuffer(os.pread(self.fds[c], 4, CHUNK_HDR_BYTES + 4 * off), np.float32)[0]

    def mm(self, e):
        c, off = divmod(e, self.ce)
        return self.mms[c][off]

    def close(self):
        self.close_mm()
        for fd in self.fds:
            os.close(fd)


def drop(f: F.Field, base: Baselines) -> None:
    base.close_mm()
    f.drop_os_cache()


def timed(fn, items) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = [fn(x) for x in items]
    return time.perf_counter() - t0, out


def timed_each(fn, items) -> tuple[float, float, list]:
    """(total seconds, median microseconds per call, results)."""
    pc = time.perf_counter
    lat, out = [], []
    t0 = pc()
    for x in items:
        a = pc()
        out.append(fn(x))
        lat.append(pc() - a)
    return pc() - t0, 1e6 * float(np.median(lat)), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=256, help="bench field size in MiB")
    ap.add_argument("--dir", default=None, help="where to put the files (default: a temp dir)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cold", type=int, default=4000, help="cold random gets")
    a = ap.parse_args(argv)
    root = tempfile.mkdtemp(prefix="bench_field_", dir=a.dir)
    rng = np.random.default_rng(a.seed)
    rows_out = []
    try:
        pb = petabyte(root)
        print("== petabyte example: 86e9 x 1000 float32 ==")
        print(f"logical {pb['logical_tb']:.0f} TB; create {pb['create_s'] * 1e3:.1f} ms, "
              f"create+write+flush {pb['create_write_flush_s'] * 1e3:.1f} ms; on disk "
              f"{pb['disk_bytes']} bytes in {pb['chunk_files']} chunk file(s); neuron 42e9 "
              f"read back {'OK' if pb['readback_ok'] else 'WRONG'}")
        t0 = time.perf_counter()
        build(root, a.mb)
        print(f"\n== bench field: {a.mb} MiB float32, {COLS} columns, built in "
              f"{time.perf_counter() - t0:.1f} s ==")
        opts = F.FieldOptions(l2_bytes=64 << 20, prefetch_depth=8)
        f = F.open(os.path.join(root, "bench"), options=opts)
        base = Baselines(f)
        n = f.size
        print(f"shape {f.shape}, chunk {f.chunk_shape} ({f.n_chunks} chunk files), "
              f"block {f.block_elems * 4} B, L1 {opts.l1_bytes >> 10} KiB, "
              f"L2 {opts.l2_bytes >> 20} MiB, prefetch {opts.prefetch_streams} streams x "
              f"depth {opts.prefetch_depth}, mode {opts.prefetch_mode}")
        print("cold = after fdatasync + posix_fadvise(DONTNEED) of every chunk file; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (other users' "
              "load inflates the field's per-get CPU share of wall time)")

        def check(vals, flat):
            if not np.array_equal(np.asarray(vals, np.float32), expected(flat)):
                raise SystemExit("benchmark read wrong data")

        # ---- hot single get (OS cache warm, field cache warm)
        hot = rng.integers(0, n, 64)
        items = [int(x) for x in np.tile(hot, 300)]
        coords = [divmod(e, COLS) for e in items]
        for e in hot:
            f.get_flat(int(e))
        base.open_mm()
        tf, v = timed(f.get, coords)
        check(v, items)
        tm, v = timed(base.mm, items)
        check(v, items)
        tp, v = timed(base.pread, items)
        check(v, items)
        rows_out.append(("hot single get", "us/get", [1e6 * t / len(items) for t in (tf, tm, tp)]))

        # Cold measurements give each contender its own third of the file (same pattern,
        # different pages) so that no contender reads pages another one just brought into
        # a cache below the guest's page cache (the virtual disk's host may cache them).
        third = n // 3

        def region(i, items):
            return [third * i + x for x in items]

        # ---- warm (prefetched) strided gets from cold storage
        hw = {}
        for stride_rows in (4, 64):
            stride = stride_rows * COLS
            base_items = list(range(7, third, stride))[:3000]
            items = region(0, base_items)
            f.clear_cache()
            f.reset_stats()
            drop(f, base)
            tf, mf, v = timed_each(f.get_flat, items)
            check(v, items)
            s = f.stats()
            hw[stride_rows] = (s.hot_warm_fraction, s)
            drop(f, base)
            base.open_mm()
            items = region(1, base_items)
            tm, mm_, v = timed_each(base.mm, items)
            check(v, items)
            drop(f, base)
            items = region(2, base_items)
            tp, mp, v = timed_each(base.pread, items)
            check(v, items)
            name = f"warm strided get ({stride_rows * 4} KiB stride)"
            rows_out.append((name, "us/get", [1e6 * t / len(base_items) for t in (tf, tm, tp)]))
            rows_out.append(("  median", "us/get", [mf, mm_, mp]))

        # ---- cold random gets: 2 rounds, contenders in rotated order, each contender on
        # a region of its own in every round (sixths of the file), page cache dropped first
        sixth = n // 6
        base_items = [int(x) for x in rng.integers(0, sixth, a.cold // 2)]
        fns = {"field": f.get_flat, "memmap": base.mm, "pread": base.pread}
        tot = {k: 0.0 for k in fns}
        cpu = {k: 0.0 for k in fns}
        med = {k: [] for k in fns}
        order = list(fns)
        for rnd in range(2):
            for j, name in enumerate(order if rnd == 0 else order[::-1]):
                items = [sixth * (3 * rnd + j) + x for x in base_items]
                f.clear_cache()
                drop(f, base)
                if name == "memmap":
                    base.open_mm()
                c0 = time.process_time()
                t, m, v = timed_each(fns[name], items)
                cpu[name] += time.process_time() - c0
                med[name].append(m)
                check(v, items)
                tot[name] += t
        cold = [1e6 * tot[k] / (2 * len(base_items)) for k in ("field", "memmap", "pread")]
        rows_out.append(("cold random get", "us/get", cold))
        rows_out.append(("  median", "us/get", [float(np.mean(med[k]))
                                                for k in ("field", "memmap", "pread")]))
        rows_out.append(("  CPU time only (user + system)", "us/get",
                         [1e6 * cpu[k] / (2 * len(base_items)) for k in ("field", "memmap", "pread")]))

        # ---- 1k-element batch get (OS page cache warm)
        idx = rng.integers(0, n, 1000)
        base.open_mm()
        for _ in range(2):
            f.batch_get(idx)
        reps = 20
        tfc = 0.0
        for _ in range(reps):
            f.clear_cache()
            t0 = time.perf_counter()
            v = f.batch_get(idx)
            tfc += (time.perf_counter() - t0) / reps
        check(v, idx)
        t0 = time.perf_counter()
        for _ in range(reps):
            v = f.batch_get(idx)
        tfh = (time.perf_counter() - t0) / reps
        check(v, idx)
        c_idx, off_idx = np.divmod(idx, f.chunk_elems)

        def mm_batch():
            out = np.empty(idx.size, np.float32)
            for c in np.unique(c_idx):
                sel = c_idx == c
                out[sel] = base.mms[c][off_idx[sel]]
            return out

        t0 = time.perf_counter()
        for _ in range(reps):
            v = mm_batch()
        tm = (time.perf_counter() - t0) / reps
        check(v, idx)
        t0 = time.perf_counter()
        for _ in range(reps):
            v = [base.pread(int(e)) for e in idx]
        tp = (time.perf_counter() - t0) / reps
        check(v, idx)
        rows_out.append(("1k batch get, field cache cold", "us/batch",
                         [1e6 * tfc, 1e6 * tm, 1e6 * tp]))
        rows_out.append(("1k batch get, field cache hot", "us/batch",
                         [1e6 * tfh, 1e6 * tm, 1e6 * tp]))

        # ---- sequential scan (cold): 2 rounds, order rotated, page cache dropped each time
        piece_rows = (8 << 20) // (COLS * 4)
        total = f.nbytes
        buf = bytearray(8 << 20)

        def raw_read():
            for p in base.paths:
                with open(p, "rb", buffering=0) as fh:
                    fh.seek(CHUNK_HDR_BYTES)
                    while fh.readinto(buf):
                        pass

        def field_scan():
            f.clear_cache()
            for r in range(0, f.shape[0], piece_rows):
                blk = f.batch_get(slice(r, r + piece_rows))
                if blk[-1, -1] != expected((r + blk.shape[0]) * COLS - 1):
                    raise SystemExit("benchmark read wrong data")

        def memmap_scan():
            base.open_mm()
            for m in base.mms:
                for s in range(0, m.size, piece_rows * COLS):
                    np.array(m[s:s + piece_rows * COLS])

        def pread_scan():
            for fd in base.fds:
                size = os.fstat(fd).st_size
                pos = CHUNK_HDR_BYTES
                while pos < size:
                    pos += os.preadv(fd, [buf], pos)

        scans = {"raw": raw_read, "field": field_scan, "memmap": memmap_scan,
                 "pread": pread_scan}
        st_ = {k: 0.0 for k in scans}
        f.reset_stats()
        for rnd in _tqdm(range(2), desc="sequential scans", unit="round"):
            for name in (list(scans) if rnd == 0 else list(scans)[::-1]):
                drop(f, base)
                t0 = time.perf_counter()
                scans[name]()
                st_[name] += time.perf_counter() - t0
        scan_stats = f.stats()
        gbs = [2 * total / st_[k] / 1e9 for k in ("field", "memmap", "pread")]
        rows_out.append(("sequential scan (8 MiB pieces)", "GB/s", gbs))
        raw_gbs = 2 * total / st_["raw"] / 1e9

        # ---- table
        print()
        hdr = f"{'measurement':40s} {'unit':9s} {'field':>10s} {'memmap':>10s} {'pread':>10s}" \
              f" {'field/memmap':>13s} {'field/pread':>12s}"
        print(hdr)
        print("-" * len(hdr))
        for name, unit, (vf, vm, vp) in rows_out:
            print(f"{name:40s} {unit:9s} {vf:10.2f} {vm:10.2f} {vp:10.2f} "
                  f"{vf / vm:13.2f} {vf / vp:12.2f}")
        print(f"{'raw read of the chunk files':40s} {'GB/s':9s} {raw_gbs:10.2f}")
        print()
        print("strided scans, share of block lookups served hot or warm (whole scan, the "
              "3 training accesses included):")
        for sr, (frac, s) in hw.items():
            print(f"  {sr * 4:3d} KiB stride: {100 * frac:.1f}% hot or warm; prefetch issued "
                  f"{s.prefetch_issued} used {s.prefetch_used} (kernel read-ahead "
                  f"{s.prefetch_used_kernel}) late {s.prefetch_late} wasted "
                  f"{s.prefetch_wasted}")
        print(f"scans (2 rounds): {scan_stats.readahead_hints} WILLNEED hints, "
              f"{scan_stats.bytes_read >> 20} MiB read by the field")
        print()
        ratio_cold = cold[0] / cold[2]
        scan_ratio = gbs[0] / raw_gbs
        worst_hw = min(v[0] for v in hw.values())
        print("targets:")
        ratio_med = float(np.mean(med["field"])) / float(np.mean(med["pread"]))
        print(f"  cold random get within 1.5x of os.pread: mean {ratio_cold:.2f}x "
              f"{'MET' if ratio_cold <= 1.5 else 'NOT MET'}, median {ratio_med:.2f}x "
              f"{'MET' if ratio_med <= 1.5 else 'NOT MET'}")
        print(f"  sequential scan >= 70% of raw read: {100 * scan_ratio:.0f}%  "
              f"{'MET' if scan_ratio >= 0.7 else 'NOT MET'}")
        print(f"  strided scans >= 90% hot/warm after warm-up: {100 * worst_hw:.1f}%  "
              f"{'MET' if worst_hw >= 0.9 else 'NOT MET'}")
        print("\nfield statistics of the scan phase:")
        print(scan_stats.format())
        base.close()
        f.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
