"""Index image file: round trip, decode from frames, corruption / truncation / version errors."""

from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np
import pytest

from proxima.config import preset
from proxima.golden.image import (MAGIC, SECTIONS, VERSION, ImageError, open_image, read_image,
                                  write_image)
from proxima.golden.index import Index
from proxima.golden.layout import Layout, reads_for_events
from proxima.golden.pq import encode
from proxima.golden.search import search

CFG = preset("tiny")


def make_index(n=400, hot=12, seed=0, cfg=CFG):
    rng = np.random.default_rng(seed)
    vec = rng.integers(0, 256, (n, cfg.vec.dim), dtype=np.uint8)
    d = ((vec[:, None, :].astype(np.int64) - vec[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.iinfo(np.int64).max)
    R = cfg.graph.R
    nb = np.sort(np.argsort(d, axis=1, kind="stable")[:, :R], axis=1).astype(np.int32)
    nb[::7, R - 3:] = -1  # some short rows
    nb[5, :] = -1  # an isolated vertex
    book = rng.integers(0, 256, (cfg.pq.M, cfg.pq.ksub, cfg.dsub), dtype=np.uint8)
    codes = encode(cfg, vec, book)
    labels = rng.permutation(n).astype(np.int64) * 3 + 7
    return Index(cfg, vec, nb, 0, book, codes, np.arange(n) < hot, (1.5, 0.25), labels)


def same(a: Index, b: Index) -> None:
    for name in ("vectors", "neighbors", "codebook", "codes", "hot", "labels"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.entry == b.entry and a.quantiser == b.quantiser and a.cfg == b.cfg


@pytest.fixture(scope="module")
def idx():
    return make_index()


@pytest.fixture()
def img(idx, tmp_path):
    p = tmp_path / "x.pxi"
    write_image(p, idx)
    return p


def _table(data: bytes) -> dict[str, tuple[int, int, int]]:
    nsec = struct.unpack_from("<I", data, 16)[0]
    out = {}
    for i in range(nsec):
        name, off, ln, crc, _ = struct.unpack_from("<16sQQII", data, 24 + 40 * i)
        out[name.rstrip(b"\0").decode()] = (off, ln, 24 + 40 * i)
    return out


def _refresh_crcs(data: bytearray) -> None:
    """Recompute every section checksum and the header checksum (a consistent forgery)."""
    for name, (off, ln, ent) in _table(bytes(data)).items():
        struct.pack_into("<I", data, ent + 32, zlib.crc32(data[off:off + ln]))
    hb = struct.unpack_from("<I", data, 12)[0]
    struct.pack_into("<I", data, 20, 0)
    struct.pack_into("<I", data, 20, zlib.crc32(bytes(data[:hb])))


def test_round_trip(idx, img):
    im = read_image(img)
    same(im.index, idx)
    assert im.layout == Layout.for_index(idx)
    assert im.metadata["n"] == idx.n and im.metadata["hot"] == 12
    same(open_image(img), idx)
    assert not [p for p in os.listdir(img.parent) if p.startswith(".")]  # no temp file left


def test_round_trip_without_hot_and_other_config(tmp_path):
    cfg = CFG.with_(nand={"cores": 3, "raw_vector_cores": 5, "page_bytes": 512},
                    graph={"R": 6})
    ix = make_index(n=97, hot=0, seed=3, cfg=cfg)
    write_image(tmp_path / "a", ix)
    same(open_image(tmp_path / "a"), ix)


def test_round_trip_multi_access_frames(tmp_path):
    """16 B accesses: normal frames span 2 accesses, hot frames 6 chunks on 5 cores."""
    cfg = CFG.with_(graph={"R": 16}, nand={"access_bytes": 16, "page_bytes": 512, "cores": 5,
                                          "raw_vector_cores": 3})
    ix = make_index(n=300, hot=9, seed=4, cfg=cfg)
    lay = write_image(tmp_path / "m", ix)
    assert lay.stride > lay.access and lay.frame_access_count == 2
    assert lay.hot_accesses > cfg.nand.cores  # a hot frame wraps around the cores
    im = read_image(tmp_path / "m")
    same(im.index, ix)
    q = np.random.default_rng(1).integers(0, 256, cfg.vec.dim, dtype=np.uint8)
    a, b = search(ix, q), search(im.index, q)
    assert np.array_equal(a.ids, b.ids) and a.counters == b.counters


def test_search_on_image_is_identical(idx, img):
    im = read_image(img)
    rng = np.random.default_rng(9)
    for q in rng.integers(0, 256, (6, CFG.vec.dim), dtype=np.uint8):
        a, b = search(idx, q), search(im.index, q)
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.dists, b.dists)
        assert a.counters == b.counters and a.events == b.events
        reads = reads_for_events(b.events, im.layout)
        assert reads and all(r.nbytes == CFG.nand.access_bytes for r in reads)


def test_neighbours_and_codes_come_from_the_frames(idx, img):
    data = bytearray(img.read_bytes())
    lay = Layout.for_index(idx)
    off = _table(bytes(data))["frames"][0]
    core_bytes = lay.index_core_bytes
    # a vertex that is not in any hot row: change its code inside its normal frame
    in_hot = set(idx.neighbors[:lay.hot].ravel().tolist())
    v = next(u for u in range(lay.hot, idx.n) if u not in in_hot)
    c, p, o = lay.frame_address(v)
    pos = off + c * core_bytes + p * CFG.nand.page_bytes + o + lay.code_offset
    data[pos] ^= 0xFF
    # and the first id of another non-hot vertex whose largest neighbour id is < N - 1
    u = next(x for x in range(lay.hot, idx.n)
             if x != v and idx.degree(x) >= 2 and idx.neighbor_list(x)[-1] < idx.n - 1)
    c, p, o = lay.frame_address(u)
    base = off + c * core_bytes + p * CFG.nand.page_bytes + o
    frame = int.from_bytes(data[base:base + lay.id_region_bytes], "little")
    first = (frame >> lay.header_bits) & ((1 << CFG.id_bits) - 1)
    frame += 1 << lay.header_bits  # first id + 1 (gaps unchanged: every later id moves too)
    assert ((frame >> lay.header_bits) & ((1 << CFG.id_bits) - 1)) == first + 1
    data[base:base + lay.id_region_bytes] = frame.to_bytes(lay.id_region_bytes, "little")
    _refresh_crcs(data)
    img.write_bytes(bytes(data))
    got = open_image(img)
    want = idx.codes[v].copy()
    want[0] ^= 0xFF
    assert np.array_equal(got.codes[v], want)
    assert np.array_equal(got.neighbor_list(u), idx.neighbor_list(u) + 1)
    others = np.ones(idx.n, bool)
    others[[u, v]] = False
    assert np.array_equal(got.neighbors[others], idx.neighbors[others])


def test_hot_frame_disagreement_is_detected(idx, img):
    data = bytearray(img.read_bytes())
    lay = Layout.for_index(idx)
    off = _table(bytes(data))["frames"][0]
    c, p, o = lay.hot_chunk_address(3, 0)
    pos = off + c * lay.index_core_bytes + p * CFG.nand.page_bytes + o + 4  # inside a code
    data[pos] ^= 0x10
    _refresh_crcs(data)
    img.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="hot frame of vertex 3"):
        open_image(img)


@pytest.mark.parametrize("section", ("header",) + SECTIONS)
def test_corruption_is_detected_per_section(img, section):
    data = bytearray(img.read_bytes())
    if section == "header":
        data[30] ^= 0x01  # inside the first table entry's name
    else:
        off, ln, _ = _table(bytes(data))[section]
        data[off + ln // 2] ^= 0x40
    img.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=f"checksum mismatch in section {section}"):
        open_image(img)


def test_truncation_is_detected(img):
    data = img.read_bytes()
    for cut in (0, 10, 23, 100, len(data) // 2, len(data) - 1):
        img.write_bytes(data[:cut])
        with pytest.raises(ImageError, match="truncated"):
            open_image(img)


def test_trailing_bytes_bad_magic_and_version(img):
    data = img.read_bytes()
    img.write_bytes(data + b"\0" * 8)
    with pytest.raises(ImageError, match="unexpected bytes"):
        open_image(img)
    img.write_bytes(b"NOTANIMG" + data[8:])
    with pytest.raises(ImageError, match="not a proxima index image"):
        open_image(img)
    bad = bytearray(data)
    struct.pack_into("<I", bad, 8, VERSION + 1)
    img.write_bytes(bytes(bad))
    with pytest.raises(ImageError, match=rf"unsupported version {VERSION + 1} \(this build "
                                         rf"reads {VERSION}\)"):
        open_image(img)
    assert data[:8] == MAGIC


def test_metadata_inconsistent_with_config(img):
    data = bytearray(img.read_bytes())
    off, ln, _ = _table(bytes(data))["metadata"]
    meta = json.loads(bytes(data[off:off + ln]))
    meta["layout"]["stride"] += 1
    blob = json.dumps(meta, sort_keys=True).encode()
    assert len(blob) == ln
    data[off:off + ln] = blob
    _refresh_crcs(data)
    img.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="disagree"):
        open_image(img)


def test_missing_file_and_unlayoutable_index(idx, tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        open_image(tmp_path / "nope")
    with pytest.raises(ImageError, match="cannot write"):
        write_image(tmp_path / "no_dir" / "x", idx)
    p = tmp_path / "keep"
    write_image(p, idx)
    before = p.read_bytes()
    bad = make_index()
    bad.hot = np.zeros(bad.n, bool)
    bad.hot[[1, 3]] = True  # not a prefix
    with pytest.raises(ImageError, match="0..H-1"):
        write_image(p, bad)
    assert p.read_bytes() == before  # the old image is untouched
    assert sorted(os.listdir(tmp_path)) == ["keep"]


def _copies_index():
    cfg = CFG.with_(layout={"hot_copies": 3, "code_copy_fraction": 0.08}, graph={"R": 16},
                    nand={"access_bytes": 16, "page_bytes": 128, "cores": 5})
    return make_index(n=300, hot=23, seed=4, cfg=cfg)


def test_code_copy_disagreement_is_refused(tmp_path):
    """A byte of a code copy that differs from the normal frame (copy 0), or a non-zero byte
    in an unused slot of the code-copy region, is refused with the copy and the vertex."""
    ix = _copies_index()
    p = tmp_path / "c"
    lay = write_image(p, ix)
    P = lay.cfg.nand.page_bytes
    good = p.read_bytes()
    base = _table(good)["frames"][0]
    for copy, u, what in ((1, 0, "code copy 1 of vertex 0 disagrees"),
                          (2, 22, "code copy 2 of vertex 22 disagrees")):
        core, page, off = lay.code_address(u, copy)
        data = bytearray(good)
        data[base + core * lay.index_core_bytes + page * P + off] ^= 0x10
        _refresh_crcs(data)
        p.write_bytes(bytes(data))
        with pytest.raises(ImageError, match=what):
            open_image(p)
    # the last byte of copy 2's last page lies in a slot beyond ceil(Hc / Ci) = 5: unused
    assert lay.code_copy_count == 24
    assert lay.frames_per_page < 5 <= 2 * lay.frames_per_page - 1
    data = bytearray(good)
    last = lay.index_pages_per_core - 1
    data[base + 0 * lay.index_core_bytes + last * P + P - 1] ^= 1
    _refresh_crcs(data)
    p.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="code copy 2 has non-zero bytes outside"):
        open_image(p)


def test_image_with_hot_copies_but_without_code_copies_is_refused(tmp_path):
    """An image written before code copies existed (its metadata has hot copies but no
    code-copy region) gets a one-line 'rebuild it' error, not a bare mismatch."""
    ix = _copies_index()
    p = tmp_path / "c"
    write_image(p, ix)
    data = bytearray(p.read_bytes())
    off, ln, _ = _table(bytes(data))["metadata"]
    meta = json.loads(bytes(data[off:off + ln]))
    for k in ("code_copy_count", "code_copy_page", "code_copy_pages"):
        del meta["layout"][k]
    blob = json.dumps(meta, sort_keys=True).encode().ljust(ln)
    data[off:off + ln] = blob
    _refresh_crcs(data)
    p.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="3 hot copies without code copies .* rebuild it"):
        open_image(p)
