"""NAND index layout: gap-encoded frames, hot frames, core round-robin address mapping.

This module is the specification of what the NAND index cores hold and where.  The frame
format is documented bit by bit in ``docs/LAYOUT.md``; the summary here is normative too.

Notation
--------
``R`` = ``cfg.graph.R``, ``B`` = ``cfg.engine.id_bits``, ``C`` = ``cfg.pq_code_bytes``,
``A`` = ``cfg.nand.access_bytes``, ``P`` = ``cfg.nand.page_bytes``, ``Ci`` = ``cfg.nand.cores``
(index cores), ``Cr`` = ``cfg.nand.raw_vector_cores`` (raw-vector cores, numbered ``Ci ..
Ci+Cr-1`` after the index cores), ``N`` vertices, ``H`` hot vertices (ids ``0..H-1``),
``W`` = the image's slot width (largest per-row gap width of the graph, ``0..B``).

Bit order
---------
A frame is a little-endian bit string: bit ``i`` is bit ``i % 8`` of byte ``i // 8``.  A field of
width ``w`` at bit offset ``o`` holds the unsigned value ``sum_k bit[o+k] << k`` (LSB first).
Equivalently: ``value = (int.from_bytes(frame, "little") >> o) & (2**w - 1)``.

Gap encoding of one row
-----------------------
Row = the ``d`` valid ids ``n_0 <= n_1 <= ... <= n_{d-1}`` (the ``-1`` padding dropped).
Gaps ``g_j = n_j - n_{j-1}`` for ``j = 1..d-1``; ``w = bitlen(max g_j)`` (``0`` if ``d <= 1``
or all gaps are 0).  The first id is stored in ``B`` bits, gaps in ``w`` bits each, packed
densely; slots ``j >= d`` hold gap 0.

Normal frame (every vertex has one)
-----------------------------------
===========================  ======================  ==========================================
bits                         field                   value
===========================  ======================  ==========================================
``[0, DB)``                  degree ``d``            ``DB = bitlen(R)``
``[DB, DB+WB)``              gap width ``w``         ``WB = bitlen(B)``
``[HB, HB+B)``               first id ``n_0``        ``HB = DB+WB``; 0 when ``d = 0``
``HB+B+(j-1)*w``, ``w`` bits gap ``g_j``, j=1..R-1   0 for ``j >= d``
up to ``HB+B+(R-1)*W``       zero padding
byte ``code_off``..+C        PQ code of the vertex   byte ``m`` = code of subspace ``m``
===========================  ======================  ==========================================

``code_off = ceil((HB + B + (R-1)*W) / 8)``, moved up to the next multiple of ``A`` if the code
would otherwise straddle an access boundary (and ``C <= A``).  ``frame_bytes = code_off + C``.
The frame *stride* is ``frame_bytes`` rounded up to a power of two when ``frame_bytes <= A``
(so frames never straddle an access) and to a multiple of ``A`` otherwise (frames start on an
access boundary).  Frames never straddle a page: ``fpp = P // stride`` frames per page.

Hot frame (vertices ``0..H-1`` additionally have one: "hot-node duplication")
---------------------------------------------------------------------------------
Same header (``d``, ``w``), then ``R`` records, each a neighbour id field followed by that
neighbour's PQ code (``8*C`` bits, byte ``m`` = subspace ``m``, LSB first):
record 0 at bit ``HB``: ``n_0`` in ``B`` bits then ``code(n_0)``; record ``j >= 1`` at bit
``HB + B + 8C + (j-1)*(w + 8C)``: ``g_j`` in ``w`` bits then ``code(n_j)``.  Records ``j >= d``
are all zero.  ``hot_frame_bits = HB + B + 8C + (R-1)*(W + 8C)``; the hot frame is
``K = ceil(ceil(hot_frame_bits/8) / A)`` accesses, zero padded.

Address mapping (core round-robin)
----------------------------------
*Hot region* (pages ``0 .. hot_pages-1`` of every index core), ``X = cfg.layout.hot_copies``
copies of it: access chunk ``a`` (``0..K-1``) of copy ``c`` (``0..X-1``) of the hot frame of
``v`` is global chunk ``g = v*K + a``: core ``(g + c*S) % Ci`` with the copy shift
``S = Ci // X``, local chunk ``l = g // Ci``, page ``c*hp + l // (P/A)``, byte offset
``(l % (P/A)) * A``, where ``hp = ceil(ceil(H*K / Ci) / (P/A))`` pages hold one copy and
``hot_pages = X * hp``.  The ``K`` chunks of one hot frame lie on ``K`` consecutive cores and
are read in parallel; copy ``c`` is copy 0 rotated by ``c*S`` cores, so the hot frames every
query reads (the entry's first) are spread over ``X`` groups of cores.  A search reads copy
``c`` (its *own copy*; the timing model gives query ``q`` copy ``q % X``); with ``X = 1`` (the
default) the mapping is the original one.

*Normal region*: frame of ``v`` on core ``v % Ci``, slot ``j = v // Ci``, page
``hot_pages + j // fpp``, byte offset ``(j % fpp) * stride``; ``npc = ceil(ceil(N/Ci) / fpp)``
pages.

*Code-copy region* (only with ``X > 1``; pages ``code_copy_page = hot_pages + npc`` on): copies
``c = 1..X-1`` of the normal frames of the vertices ``u < Hc`` (byte for byte, so ``u``'s PQ
code sits at ``code_offset`` inside each), ``Hc = ceil(code_copy_fraction * N)``
(``cfg.layout.code_copy_fraction``, exact on its decimal value like the hot count; ``Hc = 0``
with ``X = 1``), core-rotated like the hot region: copy ``c`` of the frame of ``u`` on core
``(u + c*S) % Ci``, slot ``j = u // Ci``, page ``code_copy_page + (c-1)*cp + j // fpp``, byte
offset ``(j % fpp) * stride`` (the normal frame's offset), where ``cp = ceil(ceil(Hc/Ci) /
fpp)`` pages hold one copy.  A search reads the code of a ``u < Hc`` from its own copy ``c``
(copy 0 = the normal frame), so the code reads of popular vertices, which many queries make,
are spread over ``X`` cores.  Slots of a copy beyond ``Hc`` are zero.  Measured on the
``paper`` preset (``docs/ARCHITECTURE.md``, "No hot core"): code reads are spread over many
vertices that are not hot, so only ``Hc = N`` (the default fraction 1.0) brings the busiest
core within 1.2x of the mean.

*Raw vectors*: vector ``u`` on raw core ``Ci + u % Cr``, slot ``j = u // Cr``, page ``j // rpp``,
offset ``(j % rpp) * raw_stride`` where ``raw_stride`` rounds ``cfg.vec.bytes_per_vector`` like the
frame stride and ``rpp = P // raw_stride``.

Run-time geometry registers
---------------------------
One elaborated engine serves every image that fits its capacities: what depends on the image
(``N``, ``H``, ``W``) is a register, written by the host from :meth:`Layout.registers` (a
:class:`Geometry` of integers; the derivation is there and nowhere else).  The hardware only
adds, compares, shifts and multiplies them; the one division by a run-time value, the normal
region's ``j // fpp``, is ``(j * fpp_recip) >> recip_shift(cfg)`` (:func:`div_by_reciprocal`)
with ``fpp_recip = ceil(2**s / fpp)`` (:func:`fpp_reciprocal`) and the elaboration constant
``s = slot_bits(cfg) + bitlen(P)``: exact for every slot ``j < 2**slot_bits(cfg)`` and every
``fpp <= P`` (``tests/golden/test_layout.py`` checks it exhaustively for the presets).
The code-copy region adds three registers, the copied count ``code_copy_count`` (``Hc``),
its first page ``code_copy_page`` and the pages of one copy ``code_copy_pages`` (``cp``); a
copy's page is ``code_copy_page + (c-1)*cp + j // fpp``.  Everything else stays an
elaboration constant of the configuration: ``Ci``, ``Cr``, ``A``, ``P``, ``R``, ``B``, ``C``,
``X`` (and so the copy shift ``S``), the raw-vector geometry.

Reads
-----
A :class:`Read` is one access: ``(core, page, offset, nbytes, kind)`` with ``offset`` a multiple
of ``A`` and ``nbytes = A``; a structure spanning several accesses is several reads.
:func:`reads_for_events` maps search events:

* ``('frame', v)``, ``v`` not hot: the accesses covering bytes ``[0, ceil((HB+B+(R-1)*W)/8))``
  of ``v``'s normal frame (the neighbour part; ``v``'s own code is not needed to expand ``v``).
* ``('frame', v)``, ``v`` hot: the ``K`` accesses of its hot frame (the search's own copy).
* ``('code', u)``: no read if the most recent ``'frame'`` event was of a hot vertex (the codes of
  its neighbours came with it; the search only emits codes of the expanded vertex's neighbours
  after a frame), nor, with hot copies (``X > 1``), before the first frame (the entry's code:
  the engine holds it, written with the codebook, so that no core serves every query);
  otherwise the accesses holding bytes ``[code_off, code_off+C)`` of ``u``'s normal frame, of
  the search's own copy of it if ``u < Hc`` (copy ``c > 0``: the code-copy region).
* ``('raw', u)``: the accesses covering ``u``'s raw vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from proxima.config import ProximaConfig

__all__ = [
    "LayoutError",
    "Read",
    "Layout",
    "bitlen",
    "row_gap_width",
    "gap_widths",
    "encode_frame",
    "decode_frame",
    "encode_hot_frame",
    "decode_hot_frame",
    "encode_frames",
    "decode_frames",
    "encode_hot_frames",
    "decode_hot_frames",
    "reads_for_events",
    "EVENT_KINDS",
    "Geometry",
    "GEOMETRY_FIELDS",
    "geometry_bounds",
    "slot_bits",
    "recip_shift",
    "fpp_reciprocal",
    "div_by_reciprocal",
]

EVENT_KINDS = ("frame", "code", "raw")


class LayoutError(ValueError):
    """A row, frame or layout that violates the frame format or the NAND geometry."""


class Read(NamedTuple):
    """One NAND access: ``nbytes`` (= access size) at ``offset`` of ``page`` on ``core``."""

    core: int
    page: int
    offset: int
    nbytes: int
    kind: str


def bitlen(x: int) -> int:
    """Bits of the unsigned value ``x`` (``bitlen(0) = 0``)."""
    return int(x).bit_length()


def _round_stride(nbytes: int, access: int) -> int:
    """Power of two >= nbytes if nbytes <= access, else the next multiple of ``access``."""
    if nbytes <= access:
        return 1 << max(0, (nbytes - 1).bit_length())
    return -(-nbytes // access) * access


def _valid_row(row: Sequence[int] | np.ndarray, R: int, n: int | None = None) -> list[int]:
    """The valid ids of a padded row, checked: ascending (non-decreasing) then -1 padding."""
    row = [int(x) for x in row]
    if len(row) != R:
        raise LayoutError(f"row has {len(row)} slots, expected R = {R}")
    d = 0
    while d < R and row[d] >= 0:
        d += 1
    if any(x != -1 for x in row[d:]):
        raise LayoutError(f"row {row}: ids must come first, then -1 padding only")
    ids = row[:d]
    if any(b < a for a, b in zip(ids, ids[1:])):
        raise LayoutError(f"row {row}: neighbour ids must be sorted ascending")
    if n is not None and ids and ids[-1] >= n:
        raise LayoutError(f"row {row}: neighbour id {ids[-1]} >= N = {n}")
    return ids


def row_gap_width(ids: Sequence[int]) -> int:
    """``w`` of a row of valid ascending ids: bit length of its largest gap (0 if none)."""
    return max((bitlen(b - a) for a, b in zip(ids, ids[1:])), default=0)


def gap_widths(neighbors: np.ndarray) -> np.ndarray:
    """Per-row gap width ``w`` of a padded ``(N, R)`` neighbour array (vectorised)."""
    nb = np.asarray(neighbors, dtype=np.int64)
    if nb.shape[1] < 2:
        return np.zeros(nb.shape[0], dtype=np.int64)
    valid = nb[:, 1:] >= 0
    deltas = np.where(valid, nb[:, 1:] - nb[:, :-1], 0)
    if (deltas < 0).any():
        raise LayoutError("neighbour rows must be sorted ascending")
    mx = deltas.max(axis=1)
    w = np.zeros(len(nb), dtype=np.int64)
    for b in range(64):
        hit = mx >= (1 << b)
        if not hit.any():
            break
        w[hit] = b + 1
    return w


# ---------------------------------------------------------------------------------------
# Layout: geometry of one image
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Frame sizes and the (core, page, offset) mapping for ``n`` vertices, ``hot`` hot
    vertices (ids ``0..hot-1``) and slot width ``W`` (``gap_width``)."""

    cfg: ProximaConfig
    n: int
    hot: int
    gap_width: int

    def __post_init__(self) -> None:
        cfg = self.cfg
        if not 1 <= self.n <= cfg.engine.max_vertices:
            raise LayoutError(f"N = {self.n} must be in 1..2**id_bits ({cfg.engine.max_vertices})")
        if not 0 <= self.hot <= self.n:
            raise LayoutError(f"hot count {self.hot} must be in 0..N ({self.n})")
        if not 0 <= self.gap_width <= cfg.id_bits:
            raise LayoutError(f"gap width {self.gap_width} must be in 0..id_bits ({cfg.id_bits})")
        if self.stride > cfg.nand.page_bytes:
            raise LayoutError(f"normal frame stride {self.stride} B exceeds the page "
                              f"({cfg.nand.page_bytes} B)")
        if not 1 <= self.hot_copies <= cfg.nand.cores:
            raise LayoutError(f"layout.hot_copies = {self.hot_copies} must be in 1..nand.cores "
                              f"({cfg.nand.cores})")
        if self.raw_stride > cfg.nand.page_bytes:
            raise LayoutError(f"raw vector stride {self.raw_stride} B exceeds the page "
                              f"({cfg.nand.page_bytes} B)")
        if self.index_pages_per_core > cfg.nand.pages_per_core:
            raise LayoutError(
                f"index needs {self.index_pages_per_core} pages per core ({self.hot_pages} hot, "
                f"{self.normal_pages_per_core} normal, {self.code_copies_pages} code copies), "
                f"nand.pages_per_core is {cfg.nand.pages_per_core}")
        if self.raw_pages_per_core > cfg.nand.pages_per_core:
            raise LayoutError(
                f"raw vectors need {self.raw_pages_per_core} pages per core, "
                f"nand.pages_per_core is {cfg.nand.pages_per_core}")

    def registers(self) -> "Geometry":
        """The run-time geometry registers of this image (module doc), as the host writes
        them."""
        return Geometry(n=self.n, hot=self.hot, gap_width=self.gap_width,
                        hot_accesses=self.hot_accesses, hot_copy_pages=self.hot_copy_pages,
                        hot_pages=self.hot_pages, code_offset=self.code_offset,
                        stride=self.stride, frames_per_page=self.frames_per_page,
                        fpp_recip=fpp_reciprocal(self.cfg, self.frames_per_page),
                        frame_accesses=self.frame_access_count,
                        code_accesses=self.code_access_count,
                        code_copy_count=self.code_copy_count,
                        code_copy_page=self.code_copy_page,
                        code_copy_pages=self.code_copy_pages)

    @classmethod
    def for_index(cls, index) -> "Layout":
        """Layout of an :class:`~proxima.golden.index.Index` (hot must be ids ``0..H-1``)."""
        hot = np.asarray(index.hot, dtype=bool)
        h = int(hot.sum())
        if not hot[:h].all():
            raise LayoutError("hot vertices must be ids 0..H-1 (reorder the index first)")
        W = int(gap_widths(index.neighbors).max(initial=0))
        return cls(index.cfg, index.n, h, W)

    # ---- field widths ------------------------------------------------------------------
    @cached_property
    def R(self) -> int:
        return self.cfg.graph.R

    @cached_property
    def id_bits(self) -> int:
        return self.cfg.id_bits

    @cached_property
    def code_bytes(self) -> int:
        return self.cfg.pq_code_bytes

    @cached_property
    def access(self) -> int:
        return self.cfg.nand.access_bytes

    @cached_property
    def deg_bits(self) -> int:
        return bitlen(self.R)

    @cached_property
    def width_bits(self) -> int:
        return bitlen(self.id_bits)

    @cached_property
    def header_bits(self) -> int:
        return self.deg_bits + self.width_bits

    # ---- normal frame ------------------------------------------------------------------
    @cached_property
    def id_region_bits(self) -> int:
        """Header + first id + R-1 gap slots of W bits (the neighbour part of a frame)."""
        return self.header_bits + self.id_bits + (self.R - 1) * self.gap_width

    @cached_property
    def id_region_bytes(self) -> int:
        return -(-self.id_region_bits // 8)

    @cached_property
    def code_offset(self) -> int:
        off, C, A = self.id_region_bytes, self.code_bytes, self.access
        if C <= A and (off % A) + C > A:
            off = -(-off // A) * A
        return off

    @cached_property
    def frame_bytes(self) -> int:
        return self.code_offset + self.code_bytes

    @cached_property
    def stride(self) -> int:
        return _round_stride(self.frame_bytes, self.access)

    @cached_property
    def frames_per_page(self) -> int:
        return self.cfg.nand.page_bytes // self.stride

    @cached_property
    def normal_pages_per_core(self) -> int:
        return self._frame_pages(self.n)

    def _frame_pages(self, k: int) -> int:
        """Pages per core of ``k`` normal frames laid round robin over the index cores."""
        slots = -(-k // self.cfg.nand.cores)
        return -(-slots // self.frames_per_page)

    # ---- hot frame ---------------------------------------------------------------------
    @cached_property
    def hot_frame_bits(self) -> int:
        cb = 8 * self.code_bytes
        return self.header_bits + self.id_bits + cb + (self.R - 1) * (self.gap_width + cb)

    @cached_property
    def hot_frame_bytes(self) -> int:
        return -(-self.hot_frame_bits // 8)

    @cached_property
    def hot_accesses(self) -> int:
        """``K``: accesses (chunks) per hot frame."""
        return -(-self.hot_frame_bytes // self.access)

    @cached_property
    def accesses_per_page(self) -> int:
        return self.cfg.nand.accesses_per_page

    @cached_property
    def hot_copies(self) -> int:
        """``X``: copies of the hot region (``cfg.layout.hot_copies``)."""
        return self.cfg.layout.hot_copies

    @cached_property
    def copy_shift(self) -> int:
        """``S = Ci // X``: cores by which copy ``c + 1`` is rotated against copy ``c``."""
        return self.cfg.nand.cores // self.hot_copies

    @cached_property
    def hot_copy_pages(self) -> int:
        """``hp``: pages per core of one copy of the hot region."""
        chunks = -(-(self.hot * self.hot_accesses) // self.cfg.nand.cores)
        return -(-chunks // self.accesses_per_page)

    @cached_property
    def hot_pages(self) -> int:
        return self.hot_copies * self.hot_copy_pages

    # ---- code-copy region -----------------------------------------------------------------
    @cached_property
    def code_copy_count(self) -> int:
        """``Hc``: vertices ``0..Hc-1`` whose normal frames are copied (0 with one hot copy):
        ``ceil(code_copy_fraction * N)`` on the fraction's decimal value."""
        if self.hot_copies == 1:
            return 0
        f = Fraction(str(self.cfg.layout.code_copy_fraction))
        return -(-(f.numerator * self.n) // f.denominator)

    @cached_property
    def code_copy_pages(self) -> int:
        """``cp``: pages per core of one copy of the first ``Hc`` normal frames."""
        return self._frame_pages(self.code_copy_count)

    @cached_property
    def code_copy_page(self) -> int:
        """First page of the code-copy region (right after the normal region)."""
        return self.hot_pages + self.normal_pages_per_core

    @cached_property
    def code_copies_pages(self) -> int:
        """Pages per core of the whole code-copy region: ``(X - 1) * cp``."""
        return (self.hot_copies - 1) * self.code_copy_pages

    @cached_property
    def index_pages_per_core(self) -> int:
        return self.hot_pages + self.normal_pages_per_core + self.code_copies_pages

    @cached_property
    def index_core_bytes(self) -> int:
        return self.index_pages_per_core * self.cfg.nand.page_bytes

    # ---- raw vectors -------------------------------------------------------------------
    @cached_property
    def vector_bytes(self) -> int:
        return self.cfg.vec.bytes_per_vector

    @cached_property
    def raw_stride(self) -> int:
        return _round_stride(self.vector_bytes, self.access)

    @cached_property
    def raw_per_page(self) -> int:
        return self.cfg.nand.page_bytes // self.raw_stride

    @cached_property
    def raw_pages_per_core(self) -> int:
        slots = -(-self.n // self.cfg.nand.raw_vector_cores)
        return -(-slots // self.raw_per_page)

    @cached_property
    def raw_core_bytes(self) -> int:
        return self.raw_pages_per_core * self.cfg.nand.page_bytes

    @cached_property
    def total_cores(self) -> int:
        return self.cfg.nand.cores + self.cfg.nand.raw_vector_cores

    @cached_property
    def frame_access_count(self) -> int:
        """Accesses of a normal-frame read (the same for every vertex: frames start at a
        multiple of the stride, which divides ``A`` or is a multiple of it)."""
        return len(self._span(0, 0, 0, self.id_region_bytes, "frame"))

    @cached_property
    def code_access_count(self) -> int:
        return len(self._span(0, 0, self.code_offset, self.code_bytes, "code"))

    @cached_property
    def raw_access_count(self) -> int:
        return len(self._span(0, 0, 0, self.vector_bytes, "raw"))

    # ---- address arithmetic (scalar) ---------------------------------------------------
    def _check_v(self, v: int) -> int:
        v = int(v)
        if not 0 <= v < self.n:
            raise LayoutError(f"vertex {v} out of range 0..{self.n - 1}")
        return v

    def frame_address(self, v: int) -> tuple[int, int, int]:
        """(core, page, byte offset) of the normal frame of ``v``."""
        v = self._check_v(v)
        cores = self.cfg.nand.cores
        j = v // cores
        return (v % cores, self.hot_pages + j // self.frames_per_page,
                (j % self.frames_per_page) * self.stride)

    def _check_copy(self, copy: int) -> int:
        copy = int(copy)
        if not 0 <= copy < self.hot_copies:
            raise LayoutError(f"hot copy {copy} out of range 0..{self.hot_copies - 1}")
        return copy

    def hot_chunk_address(self, v: int, a: int, copy: int = 0) -> tuple[int, int, int]:
        """(core, page, byte offset) of access chunk ``a`` of copy ``copy`` of the hot frame
        of ``v``."""
        v = self._check_v(v)
        copy = self._check_copy(copy)
        if v >= self.hot:
            raise LayoutError(f"vertex {v} is not hot (hot ids are 0..{self.hot - 1})")
        if not 0 <= a < self.hot_accesses:
            raise LayoutError(f"hot chunk {a} out of range 0..{self.hot_accesses - 1}")
        cores = self.cfg.nand.cores
        g = v * self.hot_accesses + a
        local = g // cores
        app = self.accesses_per_page
        return ((g + copy * self.copy_shift) % cores, copy * self.hot_copy_pages + local // app,
                (local % app) * self.access)

    def code_address(self, u: int, copy: int = 0) -> tuple[int, int, int]:
        """(core, page, byte offset) of the PQ code of ``u`` in copy ``copy`` of its normal
        frame (the normal frame itself for copy 0 or ``u >= code_copy_count``)."""
        u = self._check_v(u)
        copy = self._check_copy(copy)
        _, page, off = self.frame_address(u)
        if copy and u < self.code_copy_count:
            page += self.code_copy_page - self.hot_pages + (copy - 1) * self.code_copy_pages
        return self.code_core(u, copy), page, off + self.code_offset

    def code_core(self, u: int, copy: int = 0) -> int:
        """Index core of :meth:`code_address` (``u``'s normal frame's core, moved by ``copy *
        copy_shift`` for a copied code); no range checks (the timing models' per-event
        path: they check the copy once per query)."""
        if copy and u < self.code_copy_count:
            u += copy * self.copy_shift
        return u % self.cfg.nand.cores

    def raw_address(self, u: int) -> tuple[int, int, int]:
        """(global core, page, byte offset) of the raw vector of ``u``."""
        u = self._check_v(u)
        rc = self.cfg.nand.raw_vector_cores
        j = u // rc
        return (self.cfg.nand.cores + u % rc, j // self.raw_per_page,
                (j % self.raw_per_page) * self.raw_stride)

    def _span(self, core: int, page: int, start: int, nbytes: int, kind: str) -> list[Read]:
        A = self.access
        first, last = start // A, (start + nbytes - 1) // A
        return [Read(core, page, a * A, A, kind) for a in range(first, last + 1)]

    def frame_reads(self, v: int, copy: int = 0) -> list[Read]:
        """Reads that fetch ``v``'s neighbour list (hot frame copy ``copy`` if ``v`` is hot)."""
        v = self._check_v(v)
        if v < self.hot:
            return [Read(*self.hot_chunk_address(v, a, copy), self.access, "frame")
                    for a in range(self.hot_accesses)]
        core, page, off = self.frame_address(v)
        return self._span(core, page, off, self.id_region_bytes, "frame")

    def code_reads(self, u: int, copy: int = 0) -> list[Read]:
        """Reads that fetch ``u``'s PQ code from its normal frame (copy ``copy`` of it if
        ``u < code_copy_count``: :meth:`code_address`)."""
        core, page, off = self.code_address(u, copy)
        return self._span(core, page, off, self.code_bytes, "code")

    def raw_reads(self, u: int) -> list[Read]:
        core, page, off = self.raw_address(u)
        return self._span(core, page, off, self.vector_bytes, "raw")

    # ---- address arithmetic (vectorised, used by the image writer / reader) -------------
    def frame_byte_addresses(self, vs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(core, byte address within the core image) of the normal frames of ``vs``."""
        vs = np.asarray(vs, dtype=np.int64)
        cores = self.cfg.nand.cores
        j = vs // cores
        page = self.hot_pages + j // self.frames_per_page
        return (vs % cores,
                page * self.cfg.nand.page_bytes + (j % self.frames_per_page) * self.stride)

    def code_byte_addresses(self, us: np.ndarray, copy: int = 0
                            ) -> tuple[np.ndarray, np.ndarray]:
        """(core, byte address within the core image) of the PQ codes of ``us`` in copy
        ``copy`` (:meth:`code_address`, vectorised)."""
        us = np.asarray(us, dtype=np.int64)
        copy = self._check_copy(copy)
        core, addr = self.frame_byte_addresses(us)
        if copy:
            hot = us < self.code_copy_count
            shift = (self.code_copy_page - self.hot_pages + (copy - 1) * self.code_copy_pages) \
                * self.cfg.nand.page_bytes
            core = np.where(hot, (core + copy * self.copy_shift) % self.cfg.nand.cores, core)
            addr = np.where(hot, addr + shift, addr)
        return core, addr + self.code_offset

    def hot_chunk_byte_addresses(self, vs: np.ndarray, copy: int = 0
                                 ) -> tuple[np.ndarray, np.ndarray]:
        """(core, byte address) of every chunk of copy ``copy``: arrays ``(len(vs), K)``."""
        vs = np.asarray(vs, dtype=np.int64)
        copy = self._check_copy(copy)
        cores, app = self.cfg.nand.cores, self.accesses_per_page
        g = vs[:, None] * self.hot_accesses + np.arange(self.hot_accesses)[None, :]
        local = g // cores
        page = copy * self.hot_copy_pages + local // app
        return ((g + copy * self.copy_shift) % cores,
                page * self.cfg.nand.page_bytes + (local % app) * self.access)

    def raw_byte_addresses(self, us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(raw core index 0..Cr-1, byte address within that core image) of vectors ``us``."""
        us = np.asarray(us, dtype=np.int64)
        rc = self.cfg.nand.raw_vector_cores
        j = us // rc
        return us % rc, (j // self.raw_per_page) * self.cfg.nand.page_bytes + \
            (j % self.raw_per_page) * self.raw_stride

    def summary(self) -> dict:
        """Every derived number, for reports and the image metadata."""
        return {
            "n": self.n, "hot": self.hot, "gap_width": self.gap_width, "R": self.R,
            "id_bits": self.id_bits, "code_bytes": self.code_bytes, "deg_bits": self.deg_bits,
            "width_bits": self.width_bits, "id_region_bits": self.id_region_bits,
            "code_offset": self.code_offset, "frame_bytes": self.frame_bytes,
            "stride": self.stride, "frames_per_page": self.frames_per_page,
            "hot_frame_bits": self.hot_frame_bits, "hot_accesses": self.hot_accesses,
            "hot_pages": self.hot_pages, "normal_pages_per_core": self.normal_pages_per_core,
            "index_pages_per_core": self.index_pages_per_core, "raw_stride": self.raw_stride,
            "raw_pages_per_core": self.raw_pages_per_core,
            "index_cores": self.cfg.nand.cores, "raw_cores": self.cfg.nand.raw_vector_cores,
            "access_bytes": self.access, "page_bytes": self.cfg.nand.page_bytes,
            # only with copies: images of one copy keep the metadata they always had
            **({"hot_copies": self.hot_copies, "hot_copy_pages": self.hot_copy_pages,
                "code_copy_count": self.code_copy_count, "code_copy_page": self.code_copy_page,
                "code_copy_pages": self.code_copy_pages}
               if self.hot_copies > 1 else {}),
        }


# ---------------------------------------------------------------------------------------
# Run-time geometry registers (module doc)
# ---------------------------------------------------------------------------------------
class Geometry(NamedTuple):
    """The run-time geometry registers of one image (:meth:`Layout.registers`): ``n``,
    ``hot`` (``H``), ``gap_width`` (``W``), ``hot_accesses`` (``K``), ``hot_copy_pages``
    (``hp``), ``hot_pages`` (``X * hp``), ``code_offset``, ``stride``, ``frames_per_page``
    (``fpp``), ``fpp_recip`` (:func:`fpp_reciprocal`), ``frame_accesses`` and
    ``code_accesses`` (accesses of a normal-frame and of a code read), ``code_copy_count``
    (``Hc``: vertices whose codes have copies; 0 with one hot copy), ``code_copy_page``
    (first page of the code-copy region) and ``code_copy_pages`` (``cp``, pages of one copy
    of it)."""

    n: int
    hot: int
    gap_width: int
    hot_accesses: int
    hot_copy_pages: int
    hot_pages: int
    code_offset: int
    stride: int
    frames_per_page: int
    fpp_recip: int
    frame_accesses: int
    code_accesses: int
    code_copy_count: int
    code_copy_page: int
    code_copy_pages: int


#: register names in the order of :class:`Geometry` (the host's SET_GEOMETRY order too)
GEOMETRY_FIELDS = Geometry._fields


def slot_bits(cfg: ProximaConfig) -> int:
    """Bits of the largest normal-region slot ``j = v // Ci`` of the configuration."""
    return max(1, bitlen(-(-cfg.engine.max_vertices // cfg.nand.cores) - 1))


def recip_shift(cfg: ProximaConfig) -> int:
    """``s``: the shift of the reciprocal division ``j // fpp`` (an elaboration constant)."""
    return slot_bits(cfg) + bitlen(cfg.nand.page_bytes)


def fpp_reciprocal(cfg: ProximaConfig, fpp: int) -> int:
    """``ceil(2**s / fpp)``: the host-computed reciprocal of frames per page."""
    fpp = int(fpp)
    if not 1 <= fpp <= cfg.nand.page_bytes:
        raise LayoutError(f"frames per page {fpp} must be in 1..{cfg.nand.page_bytes}")
    return -(-(1 << recip_shift(cfg)) // fpp)


def div_by_reciprocal(cfg: ProximaConfig, j, recip: int):
    """``j // fpp`` the hardware's way: ``(j * recip) >> s`` (equal to it for every
    ``j < 2**slot_bits(cfg)``, ``fpp <= P``; ``j`` may be a numpy array)."""
    return (j * recip) >> recip_shift(cfg)


def geometry_bounds(cfg: ProximaConfig) -> Geometry:
    """Largest value of every register over the images the configuration allows (the
    register widths of the hardware): ``n``/``hot`` up to ``max_vertices``, ``W`` up to
    ``B``, page counts up to ``pages_per_core``."""
    per_w = []
    for w in range(cfg.id_bits + 1):
        try:
            per_w.append(Layout(cfg, 1, 0, w))
        except LayoutError:
            pass  # a slot width whose frame exceeds the page: no image has it
    if not per_w:
        raise LayoutError("no slot width fits a page")
    nv, pages = cfg.engine.max_vertices, cfg.nand.pages_per_core

    def mx(name):
        return max(getattr(x, name) for x in per_w)

    return Geometry(n=nv, hot=nv, gap_width=cfg.id_bits, hot_accesses=mx("hot_accesses"),
                    hot_copy_pages=pages, hot_pages=pages, code_offset=mx("code_offset"),
                    stride=mx("stride"), frames_per_page=cfg.nand.page_bytes,
                    fpp_recip=fpp_reciprocal(cfg, 1), frame_accesses=mx("frame_access_count"),
                    code_accesses=mx("code_access_count"), code_copy_count=nv,
                    code_copy_page=pages,
                    code_copy_pages=pages)


# ---------------------------------------------------------------------------------------
# Scalar encoder / decoder: the specification, written to be read
# ---------------------------------------------------------------------------------------
def _put(acc: int, off: int, width: int, value: int) -> int:
    if value < 0 or value >> width:
        raise LayoutError(f"value {value} does not fit {width} bits")
    return acc | (value << off)


def _get(acc: int, off: int, width: int) -> int:
    return (acc >> off) & ((1 << width) - 1)


def encode_frame(layout: Layout, row: Sequence[int], code: Sequence[int]) -> bytes:
    """Normal frame of one vertex: padded neighbour ``row`` (R slots) and its own PQ ``code``."""
    ids = _valid_row(row, layout.R, layout.n)
    w = row_gap_width(ids)
    if w > layout.gap_width:
        raise LayoutError(f"row gap width {w} exceeds the layout slot width {layout.gap_width}")
    code = bytes(int(c) for c in code)
    if len(code) != layout.code_bytes:
        raise LayoutError(f"PQ code has {len(code)} bytes, expected {layout.code_bytes}")
    B, HB = layout.id_bits, layout.header_bits
    acc = _put(0, 0, layout.deg_bits, len(ids))
    acc = _put(acc, layout.deg_bits, layout.width_bits, w)
    acc = _put(acc, HB, B, ids[0] if ids else 0)
    for j in range(1, len(ids)):
        acc = _put(acc, HB + B + (j - 1) * w, w, ids[j] - ids[j - 1])
    out = bytearray(acc.to_bytes(layout.frame_bytes, "little"))
    out[layout.code_offset:layout.code_offset + layout.code_bytes] = code
    return bytes(out)


def _decode_header(layout: Layout, acc: int) -> tuple[int, int]:
    d = _get(acc, 0, layout.deg_bits)
    w = _get(acc, layout.deg_bits, layout.width_bits)
    if d > layout.R:
        raise LayoutError(f"corrupt frame: degree {d} > R = {layout.R}")
    if w > layout.gap_width:
        raise LayoutError(f"corrupt frame: gap width {w} > slot width {layout.gap_width}")
    return d, w


def _row_from_ids(layout: Layout, ids: list[int]) -> np.ndarray:
    if ids and ids[-1] >= layout.n:
        raise LayoutError(f"corrupt frame: neighbour id {ids[-1]} >= N = {layout.n}")
    row = np.full(layout.R, -1, dtype=np.int32)
    row[:len(ids)] = ids
    return row


def decode_frame(layout: Layout, frame: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_frame`: ``(row (R,) int32 padded -1, code (C,) uint8)``."""
    if len(frame) < layout.frame_bytes:
        raise LayoutError(f"frame has {len(frame)} bytes, expected {layout.frame_bytes}")
    acc = int.from_bytes(bytes(frame[:layout.code_offset]), "little")
    d, w = _decode_header(layout, acc)
    B, HB = layout.id_bits, layout.header_bits
    ids: list[int] = []
    if d:
        ids.append(_get(acc, HB, B))
        for j in range(1, d):
            ids.append(ids[-1] + _get(acc, HB + B + (j - 1) * w, w))
    code = np.frombuffer(bytes(frame[layout.code_offset:layout.frame_bytes]), dtype=np.uint8)
    return _row_from_ids(layout, ids), code.copy()


def encode_hot_frame(layout: Layout, row: Sequence[int], codes: np.ndarray) -> bytes:
    """Hot frame: neighbour ids (gap encoded) interleaved with the neighbours' PQ codes.

    ``codes`` is the whole ``(N, C)`` code array; the result has ``K * A`` bytes."""
    ids = _valid_row(row, layout.R, layout.n)
    w = row_gap_width(ids)
    if w > layout.gap_width:
        raise LayoutError(f"row gap width {w} exceeds the layout slot width {layout.gap_width}")
    B, HB, cb = layout.id_bits, layout.header_bits, 8 * layout.code_bytes
    acc = _put(0, 0, layout.deg_bits, len(ids))
    acc = _put(acc, layout.deg_bits, layout.width_bits, w)
    for j, v in enumerate(ids):
        if j == 0:
            off, val, width = HB, v, B
        else:
            off, val, width = HB + B + cb + (j - 1) * (w + cb), v - ids[j - 1], w
        acc = _put(acc, off, width, val)
        acc = _put(acc, off + width, cb, int.from_bytes(bytes(codes[v].tolist()), "little"))
    return acc.to_bytes(layout.hot_accesses * layout.access, "little")


def decode_hot_frame(layout: Layout, frame: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_hot_frame`: ``(row (R,) int32, codes (R, C) uint8)`` with the
    codes of the neighbours in row order (zero rows for padding)."""
    if len(frame) < layout.hot_frame_bytes:
        raise LayoutError(f"hot frame has {len(frame)} bytes, expected {layout.hot_frame_bytes}")
    acc = int.from_bytes(bytes(frame), "little")
    d, w = _decode_header(layout, acc)
    B, HB, C = layout.id_bits, layout.header_bits, layout.code_bytes
    cb = 8 * C
    ids: list[int] = []
    codes = np.zeros((layout.R, C), dtype=np.uint8)
    for j in range(d):
        if j == 0:
            off, width = HB, B
            ids.append(_get(acc, off, width))
        else:
            off, width = HB + B + cb + (j - 1) * (w + cb), w
            ids.append(ids[-1] + _get(acc, off, width))
        codes[j] = np.frombuffer(_get(acc, off + width, cb).to_bytes(C, "little"), dtype=np.uint8)
    return _row_from_ids(layout, ids), codes


# ---------------------------------------------------------------------------------------
# Vectorised encoder / decoder (tested equal to the scalar spec)
# ---------------------------------------------------------------------------------------
_CHUNK = 16384


def _bits_of(values: np.ndarray, width: int) -> np.ndarray:
    """(..., width) uint8 bits of the unsigned ``values`` LSB first (``values < 2**width``)."""
    v = np.asarray(values)
    cw = next(c for c in (8, 16, 32, 64) if width <= c)
    b = np.ascontiguousarray(v.astype(f"<u{cw // 8}"))
    bits = np.unpackbits(b.view(np.uint8).reshape(v.shape + (cw // 8,)), axis=-1,
                         bitorder="little")
    return bits[..., :width]


def _val_of(bits: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_bits_of` over the last axis (int64; widths up to 64 bits)."""
    width = bits.shape[-1]
    if width == 0:
        return np.zeros(bits.shape[:-1], dtype=np.int64)
    cw = next(c for c in (8, 16, 32, 64) if width <= c)
    pad = np.zeros(bits.shape[:-1] + (cw,), dtype=np.uint8)
    pad[..., :width] = bits
    packed = np.packbits(pad, axis=-1, bitorder="little")
    return packed.view(f"<u{cw // 8}")[..., 0].astype(np.int64)


def _check_rows(layout: Layout, nb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Degrees and gap widths of a padded block; raises on malformed rows."""
    valid = nb >= 0
    d = valid.sum(axis=1)
    if (valid != (np.arange(layout.R)[None, :] < d[:, None])).any():
        raise LayoutError("neighbour rows must hold ids first, then -1 padding only")
    if (nb < -1).any() or (nb >= layout.n).any():
        raise LayoutError(f"neighbour ids out of range 0..{layout.n - 1}")
    w = gap_widths(nb)
    if (w > layout.gap_width).any():
        raise LayoutError(f"row gap width {int(w.max())} exceeds the layout slot width "
                          f"{layout.gap_width}")
    return d, w


def _gaps(nb: np.ndarray, d: np.ndarray) -> np.ndarray:
    R = nb.shape[1]
    g = np.zeros((len(nb), R - 1), dtype=np.int64)
    if R > 1:
        g = np.where(np.arange(1, R)[None, :] < d[:, None],
                     nb[:, 1:].astype(np.int64) - nb[:, :-1], 0)
    return g


def encode_frames(layout: Layout, neighbors: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Normal frames of all vertices: ``(N, frame_bytes)`` uint8, equal row by row to
    :func:`encode_frame`."""
    n, R, B, HB = len(neighbors), layout.R, layout.id_bits, layout.header_bits
    if np.shape(neighbors)[1:] != (R,) or np.shape(codes) != (n, layout.code_bytes):
        raise LayoutError(f"expected neighbors (N, {R}) and codes (N, {layout.code_bytes}), got "
                          f"{np.shape(neighbors)} and {np.shape(codes)}")
    out = np.zeros((n, layout.frame_bytes), dtype=np.uint8)
    nbits = layout.id_region_bytes * 8
    for s in range(0, n, _CHUNK):
        nb = np.asarray(neighbors[s:s + _CHUNK], dtype=np.int64)
        d, w = _check_rows(layout, nb)
        bits = np.zeros((len(nb), nbits), dtype=np.uint8)
        bits[:, :layout.deg_bits] = _bits_of(d, layout.deg_bits)
        bits[:, layout.deg_bits:HB] = _bits_of(w, layout.width_bits)
        bits[:, HB:HB + B] = _bits_of(np.where(d > 0, nb[:, 0], 0), B)
        g = _gaps(nb, d)
        for ww in np.unique(w):
            ww = int(ww)
            if ww == 0:
                continue
            sel = w == ww
            bits[sel, HB + B:HB + B + (R - 1) * ww] = \
                _bits_of(g[sel], ww).reshape(int(sel.sum()), (R - 1) * ww)
        out[s:s + len(nb), :layout.id_region_bytes] = np.packbits(bits, axis=1, bitorder="little")
        out[s:s + len(nb), layout.code_offset:] = codes[s:s + len(nb)]
    return out


def _decode_ids(layout: Layout, bits: np.ndarray, rec: int, what: str) -> tuple[np.ndarray, ...]:
    """Shared by both decoders: ``rec`` = extra bits after each id field (8C in hot frames)."""
    R, B, HB = layout.R, layout.id_bits, layout.header_bits
    m = len(bits)
    d = _val_of(bits[:, :layout.deg_bits])
    w = _val_of(bits[:, layout.deg_bits:HB])
    if (d > R).any():
        raise LayoutError(f"corrupt {what}: degree {int(d.max())} > R = {R}")
    if (w > layout.gap_width).any():
        raise LayoutError(f"corrupt {what}: gap width {int(w.max())} > slot width "
                          f"{layout.gap_width}")
    first = _val_of(bits[:, HB:HB + B])
    gaps = np.zeros((m, R - 1), dtype=np.int64)
    for ww in np.unique(w):
        ww = int(ww)
        if ww == 0:
            continue
        sel = w == ww
        base = HB + B + rec
        blk = bits[sel, base:base + (R - 1) * (ww + rec)].reshape(int(sel.sum()), R - 1, ww + rec)
        gaps[sel] = _val_of(blk[:, :, :ww])
    ids = np.concatenate([first[:, None], gaps], axis=1).cumsum(axis=1)
    live = np.arange(R)[None, :] < d[:, None]
    if (first[d == 0] != 0).any() or (gaps[~live[:, 1:]] != 0).any():
        raise LayoutError(f"corrupt {what}: non-zero padding after the last neighbour")
    if (ids[live] >= layout.n).any():
        raise LayoutError(f"corrupt {what}: neighbour id >= N = {layout.n}")
    return np.where(live, ids, -1).astype(np.int32), d, w


def decode_frames(layout: Layout, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_frames`: ``(neighbors (N, R) int32, codes (N, C) uint8)``."""
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 2 or frames.shape[1] < layout.frame_bytes:
        raise LayoutError(f"frames must be (N, >= {layout.frame_bytes}) bytes, got {frames.shape}")
    n = len(frames)
    nb = np.empty((n, layout.R), dtype=np.int32)
    for s in range(0, n, _CHUNK):
        bits = np.unpackbits(frames[s:s + _CHUNK, :layout.id_region_bytes], axis=1,
                             bitorder="little")
        nb[s:s + len(bits)] = _decode_ids(layout, bits, 0, "frame")[0]
    codes = frames[:, layout.code_offset:layout.frame_bytes].copy()
    return nb, codes


def encode_hot_frames(layout: Layout, neighbors: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Hot frames of vertices ``0..len(neighbors)-1``: ``(H, K*A)`` uint8, equal row by row to
    :func:`encode_hot_frame`; ``codes`` is the full ``(N, C)`` array."""
    h, R, B, HB = len(neighbors), layout.R, layout.id_bits, layout.header_bits
    if np.shape(neighbors)[1:] != (R,) or np.shape(codes)[1:] != (layout.code_bytes,):
        raise LayoutError(f"expected neighbors (H, {R}) and codes (N, {layout.code_bytes}), got "
                          f"{np.shape(neighbors)} and {np.shape(codes)}")
    cb = 8 * layout.code_bytes
    nbytes = layout.hot_accesses * layout.access
    out = np.zeros((h, nbytes), dtype=np.uint8)
    for s in range(0, h, _CHUNK):
        nb = np.asarray(neighbors[s:s + _CHUNK], dtype=np.int64)
        d, w = _check_rows(layout, nb)
        m = len(nb)
        live = np.arange(R)[None, :] < d[:, None]
        cbits = np.unpackbits(codes[np.where(live, nb, 0)], axis=2, bitorder="little")
        cbits[~live] = 0  # (m, R, 8C)
        bits = np.zeros((m, nbytes * 8), dtype=np.uint8)
        bits[:, :layout.deg_bits] = _bits_of(d, layout.deg_bits)
        bits[:, layout.deg_bits:HB] = _bits_of(w, layout.width_bits)
        bits[:, HB:HB + B] = _bits_of(np.where(d > 0, nb[:, 0], 0), B)
        bits[:, HB + B:HB + B + cb] = cbits[:, 0]
        g = _gaps(nb, d)
        base = HB + B + cb
        for ww in np.unique(w):
            ww = int(ww)
            sel = w == ww
            k = int(sel.sum())
            rec = np.concatenate([_bits_of(g[sel], ww), cbits[sel, 1:]], axis=2)
            bits[sel, base:base + (R - 1) * (ww + cb)] = rec.reshape(k, (R - 1) * (ww + cb))
        out[s:s + m] = np.packbits(bits, axis=1, bitorder="little")
    return out


def decode_hot_frames(layout: Layout, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_hot_frames`: ``(neighbors (H, R) int32, codes (H, R, C))``."""
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim != 2 or frames.shape[1] < layout.hot_frame_bytes:
        raise LayoutError(f"hot frames must be (H, >= {layout.hot_frame_bytes}) bytes, got "
                          f"{frames.shape}")
    h, R, B, HB, C = len(frames), layout.R, layout.id_bits, layout.header_bits, layout.code_bytes
    cb = 8 * C
    nb = np.empty((h, R), dtype=np.int32)
    codes = np.zeros((h, R, C), dtype=np.uint8)
    for s in range(0, h, _CHUNK):
        bits = np.unpackbits(frames[s:s + _CHUNK], axis=1, bitorder="little")
        rows, d, w = _decode_ids(layout, bits, cb, "hot frame")
        m = len(bits)
        nb[s:s + m] = rows
        cbits = np.zeros((m, R, cb), dtype=np.uint8)
        cbits[:, 0] = bits[:, HB + B:HB + B + cb]
        base = HB + B + cb
        for ww in np.unique(w):
            ww = int(ww)
            sel = w == ww
            blk = bits[sel, base:base + (R - 1) * (ww + cb)].reshape(int(sel.sum()), R - 1,
                                                                      ww + cb)
            cbits[sel, 1:] = blk[:, :, ww:]
        live = np.arange(R)[None, :] < d[:, None]
        if (cbits[~live] != 0).any():
            raise LayoutError("corrupt hot frame: non-zero code in a padding record")
        codes[s:s + m] = np.packbits(cbits, axis=2, bitorder="little")
    return nb, codes


# ---------------------------------------------------------------------------------------
# Events -> reads
# ---------------------------------------------------------------------------------------
def reads_for_events(events: Iterable[tuple[str, int]], layout: Layout,
                     copy: int = 0) -> list[Read]:
    """Physical reads, in order, for one query's search events (rules in the module doc);
    hot frames, and the codes of vertices ``< code_copy_count``, are read from copy
    ``copy``."""
    reads: list[Read] = []
    # with hot copies the entry's code is held by the engine: codes before the first frame
    after_hot = layout.hot_copies > 1
    for kind, v in events:
        if kind == "frame":
            after_hot = int(v) < layout.hot
            reads.extend(layout.frame_reads(v, copy))
        elif kind == "code":
            if not after_hot:
                reads.extend(layout.code_reads(v, copy))
        elif kind == "raw":
            reads.extend(layout.raw_reads(v))
        else:
            raise LayoutError(f"unknown event kind {kind!r}; expected one of {EVENT_KINDS}")
    return reads
