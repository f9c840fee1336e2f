"""NAND raw bit errors in the golden model: seeded injection, row-dropping frame decode.

The reference NAND has no ECC; the paper claims recall@10 drops by less than 3% at a raw bit
error rate (RBER) of 1e-4.  This module makes the claim measurable.

Error model
-----------
Every bit the engine reads is flipped independently with probability ``rber``, freshly for
every query (:func:`search_with_errors`: a query reads each structure at most once, its
frames once per expansion, a code once per visited vertex, a raw vector once per exact
distance, so per-query draws are per-access draws).  What is read and corrupted:

* neighbour lists: the bytes of the **frame as stored** (normal frame, or the hot frame for hot
  vertices: header, gap-encoded ids and, in hot frames, the interleaved codes); the gap decode
  of :func:`decode_rows` then either yields a row (possibly wrong ids) or finds it corrupt
  (degree > R, gap width > the slot width, non-zero padding, an id >= N) and **drops that row**:
  the vertex is expanded with no neighbours; the query goes on;
* PQ codes: the code bytes (``codes``), as read from normal frames;
* raw vectors: the vector bytes (exact distances, rerank).

The entry id and the codebook live in engine registers / SRAM and are not corrupted.  A
corrupted id equal to an id already in the row is a repeat the visited filter rejects.
Flips are drawn by count (binomial) then position (uniform without replacement), from
``numpy.random.default_rng((seed, query))``: deterministic per (seed, query).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from proxima.config import ProximaConfig

from .index import Index
from .layout import Layout, _val_of, encode_frames, encode_hot_frames

__all__ = ["flip_bits", "decode_rows", "corrupt_index", "search_with_errors"]


def flip_bits(data: np.ndarray, rber: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of the uint8 array ``data`` with each bit flipped with probability ``rber``."""
    out = np.array(data, dtype=np.uint8, copy=True)
    nbits = out.size * 8
    if rber <= 0 or nbits == 0:
        return out
    if not rber <= 1:
        raise ValueError(f"rber must be in [0, 1], got {rber}")
    k = int(rng.binomial(nbits, rber))
    pos = rng.choice(nbits, size=k, replace=False) if k < nbits // 4 else \
        np.flatnonzero(rng.random(nbits) < rber)
    flat = out.reshape(-1)
    np.bitwise_xor.at(flat, pos >> 3, (np.uint8(1) << (pos & 7).astype(np.uint8)))
    return out


def decode_rows(layout: Layout, frames: np.ndarray, hot: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """Gap-decode possibly corrupt frames: ``(rows (m, R) int32 -1 padded, ok (m,) bool)``.

    Equal to :func:`proxima.golden.layout.decode_frames` / ``decode_hot_frames`` on intact
    frames; a frame whose header, padding or ids are impossible gives ``ok = False`` and an
    empty row (dropped), never an exception."""
    R, B, HB, W = layout.R, layout.id_bits, layout.header_bits, layout.gap_width
    rec = 8 * layout.code_bytes if hot else 0
    frames = np.asarray(frames, dtype=np.uint8)
    bits = np.unpackbits(frames, axis=1, bitorder="little")
    m = len(bits)
    d = _val_of(bits[:, :layout.deg_bits])
    w = _val_of(bits[:, layout.deg_bits:HB])
    ok = (d <= R) & (w <= W)
    first = _val_of(bits[:, HB:HB + B])
    gaps = np.zeros((m, max(R - 1, 0)), dtype=np.int64)
    for ww in np.unique(w[ok]):
        ww = int(ww)
        if ww == 0:
            continue
        sel = ok & (w == ww)
        base = HB + B + rec
        blk = bits[sel, base:base + (R - 1) * (ww + rec)].reshape(int(sel.sum()), R - 1, ww + rec)
        gaps[sel] = _val_of(blk[:, :, :ww])
    ids = np.concatenate([first[:, None], gaps], axis=1).cumsum(axis=1)
    live = np.arange(R)[None, :] < np.minimum(d, R)[:, None]
    pad_bad = ((first != 0) & (d == 0)) | (np.where(live[:, 1:], 0, gaps) != 0).any(axis=1)
    ok &= ~pad_bad & ~(live & (ids >= layout.n)).any(axis=1)
    rows = np.where(live & ok[:, None], ids, -1).astype(np.int32)
    return rows, ok


def corrupt_index(index: Index, layout: Layout, rber: float, rng: np.random.Generator
                  ) -> tuple[Index, int]:
    """``(index as one query reads it, rows dropped)``: frames, codes and raw vectors with
    bit errors at ``rber`` (module doc)."""
    if rber == 0:
        return index, 0
    H = layout.hot
    nb = np.empty_like(index.neighbors)
    frames = encode_frames(layout, index.neighbors, index.codes)[:, :layout.id_region_bytes]
    nb[:], ok = decode_rows(layout, flip_bits(frames, rber, rng))
    dropped = int((~ok[H:]).sum())
    if H:
        hot = encode_hot_frames(layout, index.neighbors[:H], index.codes)
        nb[:H], hok = decode_rows(layout, flip_bits(hot, rber, rng), hot=True)
        dropped += int((~hok).sum())
    codes = flip_bits(index.codes, rber, rng)
    vectors = flip_bits(index.vectors, rber, rng)
    bad = dataclasses.replace(index, neighbors=nb, codes=codes, vectors=vectors)
    return bad, dropped


def search_with_errors(index: Index, layout: Layout, queries: np.ndarray, rber: float,
                       cfg: ProximaConfig | None = None, seed: int = 0, batch: int = 1,
                       ) -> tuple[list, int]:
    """Algorithm 1 on every query with fresh bit errors per ``batch`` queries (``batch = 1``:
    per query, the exact per-access model; larger batches share one draw, for speed, and
    keep the per-query error statistics).  Returns ``(results, rows dropped in total)``."""
    from .search_batch import search_batch

    results, dropped = [], 0
    for s in range(0, len(queries), batch):
        bad, d = corrupt_index(index, layout, rber, np.random.default_rng((seed, s)))
        dropped += d
        results += search_batch(bad, queries[s:s + batch], cfg or index.cfg)
    return results, dropped
