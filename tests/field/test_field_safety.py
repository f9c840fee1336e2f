"""Issue 22's field cases: one writer, no torn rows, lost chunks, checked casts, stale temps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from proxima.cli import main
from proxima.golden import field as F
from proxima.golden.field.format import LIST_NAME


def _run(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args],
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ single writer
def test_second_writer_in_this_process_is_refused(tmp_path):
    f = F.create(tmp_path / "f", (10, 4), "int32")
    with pytest.raises(F.FieldLockedError, match="already open for writing by this process"):
        F.open(tmp_path / "f", "r+")
    with pytest.raises(F.FieldLockedError):
        F.create(tmp_path / "f", (3,), "int8", overwrite=True)
    r = F.open(tmp_path / "f")  # readers are welcome beside the writer
    f[1] = [1, 2, 3, 4]
    f.close()
    r.refresh()
    assert r.get((1, 3)) == 4
    g = F.open(tmp_path / "f", "r+")  # the lock was released by close()
    g.close()


def test_second_writer_process_is_refused(tmp_path):
    """Two processes opening the same field r+: the second gets a one-line lock error (the
    issue's 'two writers, then verify reports a checksum mismatch')."""
    p = tmp_path / "f"
    F.create(p, (64, 8), "int64", chunk_rows=8).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from proxima.golden import field as F
            f = F.open(sys.argv[1], "r+")
            f[0] = 7
            print("locked", flush=True)
            sys.stdin.readline()
            f.close()
        """), str(p)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(F.FieldLockedError, match=f"by process {holder.pid}"):
            F.open(p, "r+")
        other = _run("""
            import sys
            from proxima.golden import field as F
            try:
                F.open(sys.argv[1], "r+")
            except F.FieldLockedError as e:
                print("refused:", e)
        """, str(p))
        assert "refused:" in other.stdout and "one writer at a time" in other.stdout
        assert main(["field", "info", str(p), "--verify", "--quiet"]) == 0
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=30)
    g = F.open(p, "r+")
    assert g.get((0, 3)) == 7
    g.close()
    assert F.open(p).verify() == 1


def test_reader_beside_writer_never_sees_a_torn_row(tmp_path):
    """A writer process rewrites whole rows (every element of row r equal to a counter) and
    flushes; readers here (fresh opens with verify=True and a long-lived one that refreshes)
    must only ever see uniform rows and no false CorruptChunkError."""
    p = tmp_path / "f"
    cols = 1024  # 8 kB rows: several 4 kB blocks per row
    F.create(p, (16, cols), "int64", chunk_rows=4).close()
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        import numpy as np
        from proxima.golden import field as F
        f = F.open(sys.argv[1], "r+")
        print("ready", flush=True)
        for v in range(1, 121):
            for r in range(0, 16, 3):
                f.batch_set((slice(r, r + 1), slice(0, 512)), v)  # a partial write, then
                f[r, 512:] = v                                    # the rest: torn if seen
            f.flush()
        f.close()
    """), str(p)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    long_lived = F.open(p, options=F.FieldOptions(block_bytes=4096, l1_bytes=16384,
                                                  l2_bytes=32768, max_open_chunks=2))
    reads = torn = 0
    t_end = time.monotonic() + 30
    while writer.poll() is None and time.monotonic() < t_end:
        g = F.open(p, verify=True)
        for fld in (g, long_lived):
            for r in range(0, 16, 3):
                row = fld.get(r)
                reads += 1
                torn += int(not (row == row[0]).all())
        g.close()
        long_lived.refresh()
    assert writer.wait(timeout=60) == 0
    assert reads > 20 and torn == 0
    final = F.open(p, verify=True)
    assert final.verify() == 4 and (final.batch_get(slice(0, 16, 3)) == 120).all()


# ------------------------------------------------------------------ lost chunks
def test_deleted_chunk_is_an_error_not_zeros(tmp_path, capsys):
    p = tmp_path / "f"
    f = F.create(p, (40, 4), "float32", chunk_rows=10)
    f.batch_set(slice(None), np.ones((40, 4)))
    f.close()
    assert (p / LIST_NAME).exists()
    os.unlink(p / F.chunk_relpath(2))
    g = F.open(p)
    assert g.get((5, 0)) == 1.0
    with pytest.raises(F.LostChunkError, match="chunk 2 .*missing"):
        g.get((25, 0))
    with pytest.raises(F.LostChunkError):
        g.batch_get(slice(None))
    with pytest.raises(F.LostChunkError):
        g.verify()
    assert main(["field", "info", str(p), "--verify", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "chunk 2" in err and "missing" in err and len(err.strip().splitlines()) == 1
    w = F.open(p, "r+")
    with pytest.raises(F.LostChunkError):  # a partial write cannot resurrect it as zeros
        w[25, 0] = 3.0
    w.batch_set(slice(20, 30), 2.0)  # rewriting the whole chunk restores it
    w.close()
    assert F.open(p).verify() == 4 and F.open(p).get((25, 3)) == 2.0


def test_chunk_list_reconciled_with_files(tmp_path):
    """A legacy field (no list) gets one from its files on the first writable open."""
    p = tmp_path / "f"
    f = F.create(p, (40,), "int16", chunk_rows=10)
    f[3] = 1
    f[33] = 2
    f.close()
    os.unlink(p / LIST_NAME)
    assert F.open(p).expected_chunk_ids() == [0, 3]
    F.open(p, "r+").close()
    os.unlink(p / F.chunk_relpath(3))
    with pytest.raises(F.LostChunkError):
        F.open(p).verify()


# ------------------------------------------------------------------ checked casts
@pytest.mark.parametrize("dtype,value,msg", [
    ("int32", 1e20, "overflow"), ("int32", float("nan"), "NaN"), ("int32", float("inf"), "NaN"),
    ("int32", 2 ** 31, "overflow"), ("int32", -2 ** 31 - 1, "overflow"),
    ("uint8", -1, "overflow"), ("int16", 1.5, "fraction"), ("bool", 2, "overflow"),
    ("float32", 1e300, "overflow"), ("float64", 1 + 2j, "imaginary"), ("int8", "x", "cannot"),
])
def test_writes_refuse_lossy_casts(tmp_path, dtype, value, msg):
    f = F.create(tmp_path / "f", (4, 3), dtype)
    f[0, 1] = 1
    with pytest.raises(F.FieldValueError, match=msg):
        f[0, 0] = value
    with pytest.raises(F.FieldValueError, match=msg):
        f[1] = [0, value, 0]  # a row: nothing of it is written
    with pytest.raises(F.FieldValueError, match=msg):
        f.batch_set(np.array([5]), [value])
    assert f.get((0, 0)) == 0 and f.get((0, 1)) == 1 and not f.get(1).any()
    f.close()


def test_exact_casts_are_accepted(tmp_path):
    f = F.create(tmp_path / "f", (3, 2), "int32")
    f[0] = np.array([2 ** 31 - 1, -2 ** 31], dtype=np.int64)
    f[1, 0] = 5.0
    f[2] = np.array([1 + 0j, 2 + 0j])
    g = F.create(tmp_path / "g", (2,), "float32")
    g[0] = 0.1  # float rounding is not a loss the field refuses
    assert f.get(0).tolist() == [2 ** 31 - 1, -2 ** 31] and f.get((1, 0)) == 5
    assert f.get(2).tolist() == [1, 2] and g.get(0) == np.float32(0.1)


# ------------------------------------------------------------------ stale temporary files
def test_killed_writer_leaves_no_damage_and_its_temps_are_removed(tmp_path):
    p = tmp_path / "f"
    f = F.create(p, (20, 4), "int32", chunk_rows=5)
    f.batch_set(slice(None), 1)
    f.close()
    w = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, os
        from proxima.golden import field as F
        f = F.open(sys.argv[1], "r+")
        f[0, 0] = 99        # unflushed: lives in the chunk's copy only
        f[19] = [5, 5, 5, 5]
        print("written", flush=True)
        sys.stdin.readline()
    """), str(p)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert w.stdout.readline().strip() == "written"
    w.send_signal(signal.SIGKILL)
    w.wait(timeout=30)
    temps = sorted(x.name for x in p.rglob("*.tmp*"))
    assert temps == ["000.pxc.tmp", "003.pxc.tmp"]
    (p / "field.pxf.tmp").write_bytes(b"junk")
    g = F.open(p, verify=True)  # readers ignore the temps and see the last flushed state
    assert g.verify() == 4 and (g.batch_get(...) == 1).all()
    F.open(p, "r+").close()  # the next writer removes them
    assert list(p.rglob("*.tmp*")) == []
    assert F.open(p).verify() == 4


def test_writer_dropped_without_close_publishes(tmp_path):
    f = F.create(tmp_path / "f", (8,), "int64")
    f[3] = 42
    del f
    assert F.open(tmp_path / "f").get(3) == 42
    F.open(tmp_path / "f", "r+").close()  # lock released by the garbage-collected writer


# ------------------------------------------------------------------ CLI
def test_field_get_negative_index(tmp_path, capsys):
    p = tmp_path / "f"
    f = F.create(p, (3, 2), "int32")
    f[2] = [7, 8]
    f.close()
    assert main(["field", "get", str(p), "-1,0"]) == 0
    assert capsys.readouterr().out.strip() == "7"
    assert main(["field", "get", str(p), "-1"]) == 0
    assert capsys.readouterr().out.strip() == "[7 8]"
    assert main(["field", "get", str(p), "-4,0"]) == 2
    assert "out of range" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["field", "bench", "--gets", "0"], ["field", "bench", "--mb", "-1"],
    ["field", "create", "X", "--shape", "4,3", "--chunk-bytes", "-1"],
    ["field", "create", "X", "--shape", "4,3", "--chunk-rows", "0"],
])
def test_field_cli_rejects_bad_counts(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert "must be >= " in capsys.readouterr().err
    assert not (tmp_path / "X").exists()
