"""Vector file formats: round trips, memory maps, streaming, bad files, atomic writes."""

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from proxima.golden.vecio import (FORMATS, VectorFileError, VectorWriter, detect_format,
                                  iter_vectors, read_vectors, vector_file_info, write_vectors)

SHARED = Path("/work/shared/data/words-minilm-20k")

DTYPES = {"fvecs": np.float32, "bvecs": np.uint8, "ivecs": np.int32, "fbin": np.float32,
          "u8bin": np.uint8, "i8bin": np.int8, "ibin": np.int32, "npy": np.float64}


def sample(fmt, n, dim, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(DTYPES[fmt])
    if dt.kind == "f":
        return (rng.standard_normal((n, dim)) * 100).astype(dt)
    ii = np.iinfo(dt)
    return rng.integers(max(ii.min, -(1 << 20)), min(ii.max, 1 << 20), (n, dim),
                        endpoint=True).astype(dt)


def leftovers(d):
    return [p for p in os.listdir(d) if p.endswith(".tmp")]


# ---- round trips --------------------------------------------------------------------

@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (13, 1), (257, 33)])
def test_round_trip(tmp_path, fmt, shape):
    x = sample(fmt, *shape, seed=shape[0])
    p = tmp_path / f"v.{fmt}"
    write_vectors(p, x)
    info = vector_file_info(p)
    assert (info.fmt, info.n, info.dim) == (fmt, *shape)
    y = read_vectors(p)
    assert y.dtype == x.dtype and y.shape == shape and y.flags.c_contiguous
    np.testing.assert_array_equal(y, x)
    m = read_vectors(p, mmap=True)
    assert isinstance(m.base, np.memmap) or isinstance(m, np.memmap)
    assert not m.flags.writeable
    np.testing.assert_array_equal(m, x)
    for chunk in (1, 5, 1000):
        parts = list(iter_vectors(p, chunk))
        assert all(len(c) <= chunk for c in parts)
        assert all(c.flags.c_contiguous and c.flags.writeable for c in parts)
        np.testing.assert_array_equal(np.concatenate(parts), x)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["fvecs", "bvecs", "ivecs"])
def test_vecs_mmap_is_strided_view_over_file(tmp_path, fmt):
    x = sample(fmt, 40, 6)
    p = tmp_path / f"v.{fmt}"
    write_vectors(p, x)
    m = read_vectors(p, mmap=True)
    itemsize = np.dtype(DTYPES[fmt]).itemsize
    assert m.strides == (4 + 6 * itemsize, itemsize)  # skips the per-row dim word
    data = p.read_bytes()
    row = 4 + 6 * itemsize
    assert len(data) == 40 * row
    assert all(struct.unpack_from("<i", data, r * row)[0] == 6 for r in range(40))
    np.testing.assert_array_equal(m, x)


def test_file_layouts_by_hand(tmp_path):
    x = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    write_vectors(tmp_path / "a.bvecs", x)
    assert (tmp_path / "a.bvecs").read_bytes() == \
        struct.pack("<i", 3) + bytes([1, 2, 3]) + struct.pack("<i", 3) + bytes([4, 5, 6])
    write_vectors(tmp_path / "a.u8bin", x)
    assert (tmp_path / "a.u8bin").read_bytes() == struct.pack("<ii", 2, 3) + bytes(range(1, 7))
    f = np.array([[1.5, -2.0]], dtype=np.float32)
    write_vectors(tmp_path / "a.fvecs", f)
    assert (tmp_path / "a.fvecs").read_bytes() == struct.pack("<iff", 2, 1.5, -2.0)
    write_vectors(tmp_path / "a.npy", f)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), f)


def test_streaming_ranges_equal_full_read(tmp_path):
    x = sample("ivecs", 101, 5)
    for fmt in ("ivecs", "ibin", "npy"):
        p = tmp_path / f"r.{fmt}"
        write_vectors(p, x.astype(np.int32))
        for start, stop, chunk in [(0, 101, 7), (3, 50, 10), (100, 101, 1), (20, 20, 4)]:
            parts = list(iter_vectors(p, chunk, start=start, stop=stop))
            got = np.concatenate(parts) if parts else np.empty((0, 5), np.int32)
            np.testing.assert_array_equal(got, x[start:stop])
        with pytest.raises(ValueError, match="bad row range"):
            list(iter_vectors(p, 4, start=5, stop=200))


def test_writer_streams_chunks_and_fixes_headers(tmp_path):
    rng = np.random.default_rng(3)
    chunks = [rng.standard_normal((k, 9)).astype(np.float32) for k in (5, 0, 17, 1)]
    for fmt in ("fbin", "npy", "fvecs"):
        p = tmp_path / f"w.{fmt}"
        with VectorWriter(p, dim=9) as w:
            for c in chunks:
                w.write(c)
        np.testing.assert_array_equal(read_vectors(p), np.concatenate(chunks))
        if fmt == "npy":
            np.testing.assert_array_equal(np.load(p), np.concatenate(chunks))
    assert leftovers(tmp_path) == []


def test_fmt_override_and_extension_case(tmp_path):
    x = sample("fbin", 4, 3)
    write_vectors(tmp_path / "data.raw", x, fmt="fbin")
    np.testing.assert_array_equal(read_vectors(tmp_path / "data.raw", fmt="fbin"), x)
    write_vectors(tmp_path / "UP.FVECS", x)
    assert detect_format(tmp_path / "UP.FVECS") == "fvecs"
    np.testing.assert_array_equal(read_vectors(tmp_path / "UP.FVECS"), x)


# ---- writing: rejected inputs ---------------------------------------------------------

@pytest.mark.parametrize("fmt", list(FORMATS))
def test_empty_arrays_rejected(tmp_path, fmt):
    dt = DTYPES[fmt]
    for shape in [(0, 4), (3, 0), (0, 0)]:
        with pytest.raises(VectorFileError, match="empty"):
            write_vectors(tmp_path / f"e.{fmt}", np.zeros(shape, dt))
    with pytest.raises(VectorFileError, match="2-D"):
        write_vectors(tmp_path / f"e.{fmt}", np.zeros(5, dt))
    with pytest.raises(VectorFileError, match="no rows"):
        with VectorWriter(tmp_path / f"e.{fmt}", dim=3):
            pass
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt,arr,msg", [
    ("fvecs", np.zeros((2, 2), np.float64), "must be float32"),
    ("fbin", np.zeros((2, 2), np.int32), "must be float32"),
    ("bvecs", np.zeros((2, 2), np.float32), "must be an integer"),
    ("u8bin", np.array([[0, 256]], np.int64), "do not fit"),
    ("u8bin", np.array([[-1, 3]], np.int16), "do not fit"),
    ("i8bin", np.array([[128]], np.int32), "do not fit"),
    ("ivecs", np.array([[1 << 31]], np.int64), "do not fit"),
    ("ibin", np.zeros((1, 1), np.float32), "must be an integer"),
    ("npy", np.array([["a"]]), "must be numeric"),
])
def test_wrong_dtype_on_write(tmp_path, fmt, arr, msg):
    p = tmp_path / f"d.{fmt}"
    with pytest.raises(VectorFileError, match=msg) as e:
        write_vectors(p, arr)
    assert str(p) in str(e.value)
    assert os.listdir(tmp_path) == []


def test_integer_formats_accept_fitting_wider_ints(tmp_path):
    ids = np.array([[0, 5, 2**31 - 1]], dtype=np.int64)
    write_vectors(tmp_path / "g.ivecs", ids)
    got = read_vectors(tmp_path / "g.ivecs")
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ids)


def test_unknown_extension(tmp_path):
    with pytest.raises(VectorFileError, match="unknown vector file extension '.txt'"):
        write_vectors(tmp_path / "x.txt", np.zeros((1, 1), np.float32))
    with pytest.raises(VectorFileError, match="unknown vector file extension"):
        read_vectors(tmp_path / "noext")
    with pytest.raises(VectorFileError, match="unknown format"):
        read_vectors(tmp_path / "x.fvecs", fmt="hdf5")


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "keep.fbin"
    old = sample("fbin", 3, 2)
    write_vectors(p, old)
    before = p.read_bytes()
    with pytest.raises(RuntimeError):
        with VectorWriter(p, dim=2) as w:
            w.write(sample("fbin", 10, 2, seed=9))
            raise RuntimeError("interrupted")
    assert p.read_bytes() == before
    with pytest.raises(VectorFileError, match="columns"):
        with VectorWriter(p, dim=2) as w:
            w.write(sample("fbin", 4, 2))
            w.write(sample("fbin", 4, 3))
    assert p.read_bytes() == before
    assert leftovers(tmp_path) == []
    new = sample("fbin", 6, 2, seed=4)
    write_vectors(p, new)
    np.testing.assert_array_equal(read_vectors(p), new)


# ---- reading: bad files ---------------------------------------------------------------

@pytest.mark.parametrize("fmt", list(FORMATS))
def test_empty_and_missing_files(tmp_path, fmt):
    p = tmp_path / f"z.{fmt}"
    p.write_bytes(b"")
    for call in (lambda: read_vectors(p), lambda: read_vectors(p, mmap=True),
                 lambda: list(iter_vectors(p, 3))):
        with pytest.raises(VectorFileError, match="empty file|not a valid"):
            call()
    with pytest.raises(VectorFileError, match="no such file"):
        read_vectors(tmp_path / f"missing.{fmt}")


@pytest.mark.parametrize("fmt", ["fvecs", "bvecs", "ivecs"])
def test_vecs_truncated(tmp_path, fmt):
    p = tmp_path / f"t.{fmt}"
    write_vectors(p, sample(fmt, 5, 4))
    data = p.read_bytes()
    for cut in (1, 3, len(data) // 5 - 1):
        p.write_bytes(data[:-cut])
        with pytest.raises(VectorFileError, match="not a multiple of the row size") as e:
            read_vectors(p)
        assert str(p) in str(e.value)
    p.write_bytes(data[:3])
    with pytest.raises(VectorFileError, match="truncated"):
        read_vectors(p)


@pytest.mark.parametrize("fmt", ["fvecs", "bvecs", "ivecs"])
def test_vecs_inconsistent_dims(tmp_path, fmt):
    p = tmp_path / f"i.{fmt}"
    x = sample(fmt, 6, 4)
    write_vectors(p, x)
    row = 4 + 4 * np.dtype(DTYPES[fmt]).itemsize
    data = bytearray(p.read_bytes())
    data[3 * row:3 * row + 4] = struct.pack("<i", 5)  # size still a multiple of the row size
    p.write_bytes(bytes(data))
    for call in (lambda: read_vectors(p), lambda: read_vectors(p, mmap=True),
                 lambda: list(iter_vectors(p, 2))):
        with pytest.raises(VectorFileError, match="row 3 declares 5"):
            call()
    # rows before the bad one stream fine; check=False trusts the file
    np.testing.assert_array_equal(next(iter_vectors(p, 3)), x[:3])
    np.testing.assert_array_equal(read_vectors(p, check=False), x)
    # a genuinely mixed file: second row longer
    rows = struct.pack("<i", 2) + np.zeros(2, DTYPES[fmt]).tobytes() + \
        struct.pack("<i", 3) + np.zeros(3, DTYPES[fmt]).tobytes()
    p.write_bytes(rows)
    with pytest.raises(VectorFileError, match="not a multiple|inconsistent"):
        read_vectors(p)
    p.write_bytes(struct.pack("<i", 0) + struct.pack("<i", 0))
    with pytest.raises(VectorFileError, match="dimension 0"):
        read_vectors(p)


@pytest.mark.parametrize("fmt", ["fbin", "u8bin", "i8bin", "ibin"])
def test_bin_bad_headers(tmp_path, fmt):
    p = tmp_path / f"h.{fmt}"
    x = sample(fmt, 5, 3)
    write_vectors(p, x)
    body = p.read_bytes()[8:]
    cases = [
        (struct.pack("<ii", 6, 3) + body, "truncated: header declares n=6"),
        (struct.pack("<ii", 4, 3) + body, "trailing bytes"),
        (struct.pack("<ii", 5, 4) + body, "truncated"),
        (struct.pack("<ii", 0, 3), "n=0"),
        (struct.pack("<ii", 5, -3) + body, "dim=-3"),
        (struct.pack("<i", 5), "truncated header"),
        (struct.pack("<ii", 5, 3) + body[:-1], "truncated"),
    ]
    for data, msg in cases:
        p.write_bytes(data)
        with pytest.raises(VectorFileError, match=msg) as e:
            read_vectors(p, mmap=True)
        assert str(p) in str(e.value)


def test_npy_bad_files(tmp_path):
    p = tmp_path / "b.npy"
    np.save(p, np.zeros(5, np.float32))
    with pytest.raises(VectorFileError, match="2-D"):
        read_vectors(p)
    np.save(p, np.zeros((2, 2, 2), np.float32))
    with pytest.raises(VectorFileError, match="2-D"):
        read_vectors(p)
    np.save(p, np.zeros((0, 4), np.float32))
    with pytest.raises(VectorFileError, match="at least one row"):
        read_vectors(p)
    np.save(p, np.ones((4, 4), np.float32))
    data = p.read_bytes()
    p.write_bytes(data[:-5])
    with pytest.raises(VectorFileError, match="truncated"):
        read_vectors(p)
    p.write_bytes(b"not numpy at all")
    with pytest.raises(VectorFileError, match="not a valid .npy"):
        read_vectors(p)
    np.save(p, np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)))
    np.testing.assert_array_equal(read_vectors(p), np.arange(12).reshape(3, 4))
    np.testing.assert_array_equal(np.concatenate(list(iter_vectors(p, 2))),
                                  np.arange(12).reshape(3, 4))


# ---- the shared real data set -------------------------------------------------------------

def test_shared_words_minilm_shapes():
    base = read_vectors(SHARED / "base.fvecs", mmap=True)
    assert base.shape == (20000, 384) and base.dtype == np.float32
    q = read_vectors(SHARED / "query.fvecs")
    assert q.shape == (500, 384) and q.dtype == np.float32
    gt = read_vectors(SHARED / "groundtruth.ivecs")
    assert gt.shape == (500, 100) and gt.dtype == np.int32
    assert gt.min() >= 0 and gt.max() < 20000
    norms = np.linalg.norm(q, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-3)  # README: unit norm
    first = next(iter_vectors(SHARED / "base.fvecs", 1000))
    np.testing.assert_array_equal(first, base[:1000])
