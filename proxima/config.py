"""The one configuration object.

Every constant the golden model, the Amaranth elaboration, the NAND page layout and the
timing model use is defined here once, either as a field of a section or as a property
derived from fields.  Nothing else in the project writes a width, a size or a latency as a
literal: it asks the configuration.

Sections
--------
``vec``     quantised vector format (dimension, element width)
``graph``   graph build parameters (R, build list size, alpha)
``pq``      product quantisation (M subspaces x 2**code_bits centroids, ADT entry width)
``search``  Algorithm 1 (L, T0, T_step, r, beta, k) and the beam-search baseline width
``bloom``   the visited-set Bloom filter (bits, hashes, seed)
``engine``  engine organisation (queues, sorter width, lanes, clock)
``nand``    NAND geometry and timing (cores, access size, page size, tR)
``layout``  index image layout (hot-node fraction, reorder sample)
``cache``   the NAND controller's page cache and stride prefetcher

Presets: ``tiny`` (unit tests), ``default`` (fits an ECP5-85F / small FPGA), ``paper``
(the published ASIC: R=64, M=32, 256 queues, 512 NAND cores).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = [
    "ConfigError",
    "SEARCH_TIME_FIELDS",
    "is_search_time",
    "VecConfig",
    "GraphConfig",
    "PQConfig",
    "SearchConfig",
    "BloomConfig",
    "EngineConfig",
    "NandConfig",
    "LayoutConfig",
    "CacheConfig",
    "ProximaConfig",
    "PRESETS",
    "preset",
]


class ConfigError(ValueError):
    """An impossible or inconsistent configuration."""


def _clog2(n: int) -> int:
    """Bits needed to hold values 0..n-1 (at least 1)."""
    return max(1, (int(n) - 1).bit_length())


def _bits_for(value: int) -> int:
    """Bits needed to hold the unsigned value ``value`` (at least 1)."""
    return max(1, int(value).bit_length())


def _is_pow2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def sorter_pipeline_latency(depth: int, stages_per_reg: int = 1) -> int:
    """Cycles from an accepted input vector to its sorted output of the RTL bitonic sorter
    (``hdl/sorter.py``) with ``depth`` network stages cut into groups of ``stages_per_reg``:
    two register levels per group (swap decisions, then the swapped keys) plus the one
    cycle of the output ring behind its registered stall enable.  The one definition: the
    RTL takes its latency from here and its tests measure it."""
    return 2 * -(-int(depth) // int(stages_per_reg)) + 1


def _check_types(section: str, obj) -> None:
    """Every field holds a value of its declared kind: ``bool``, ``int`` (not bool) or a
    finite ``float`` (ints accepted).  Runs before the range checks, so a string, ``nan`` or
    ``inf`` is named as such instead of failing a comparison later."""
    for f in fields(obj):
        v = getattr(obj, f.name)
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        where = f"{section}.{f.name}"
        if kind == "bool":
            if not isinstance(v, bool):
                raise ConfigError(f"{where} must be true or false, got {v!r}")
        elif kind == "int":
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{where} must be an integer, got {v!r}")
        elif kind == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{where} must be a number, got {v!r}")
            if not math.isfinite(v):
                raise ConfigError(f"{where} must be a finite number, got {v!r}")


@dataclass(frozen=True)
class VecConfig:
    dim: int = 128
    elem_bits: int = 8  # unsigned integer elements; float data is quantised to this

    @property
    def elem_max(self) -> int:
        return (1 << self.elem_bits) - 1

    @property
    def bytes_per_vector(self) -> int:
        return (self.dim * self.elem_bits + 7) // 8

    def validate(self) -> None:
        if not 1 <= self.dim <= 1 << 16:
            raise ConfigError(f"vec.dim must be in 1..65536, got {self.dim}")
        if self.elem_bits not in (8,):
            raise ConfigError(f"vec.elem_bits must be 8 (uint8 vectors), got {self.elem_bits}")


@dataclass(frozen=True)
class GraphConfig:
    R: int = 32  # maximum out-degree; frames hold exactly R slots
    build_L: int = 64  # Vamana build candidate list size
    alpha: float = 1.2  # Vamana second-pass pruning factor
    passes: int = 2

    def validate(self) -> None:
        if self.R < 2:
            raise ConfigError(f"graph.R must be >= 2, got {self.R}")
        if self.build_L < self.R:
            raise ConfigError(f"graph.build_L ({self.build_L}) must be >= graph.R ({self.R})")
        if not self.alpha >= 1.0:
            raise ConfigError(f"graph.alpha must be >= 1.0, got {self.alpha}")
        if self.build_L > 1 << 16:
            raise ConfigError(f"graph.build_L must be <= 65536, got {self.build_L}")
        if self.passes not in (1, 2):
            raise ConfigError(f"graph.passes must be 1 or 2, got {self.passes}")


@dataclass(frozen=True)
class PQConfig:
    M: int = 16  # subspaces; dim must be divisible by M
    code_bits: int = 8  # 2**code_bits centroids per subspace
    adt_bits: int = 16  # width of one ADT entry (unsigned, saturating)
    train_size: int = 50_000  # vectors sampled for k-means
    train_iters: int = 20

    @property
    def ksub(self) -> int:
        return 1 << self.code_bits

    def validate(self) -> None:
        if self.M < 1:
            raise ConfigError(f"pq.M must be >= 1, got {self.M}")
        if self.code_bits != 8:
            raise ConfigError(f"pq.code_bits must be 8 (one byte per code), got {self.code_bits}")
        if not 4 <= self.adt_bits <= 32:
            raise ConfigError(f"pq.adt_bits must be in 4..32, got {self.adt_bits}")
        if self.train_size < 1:
            raise ConfigError(f"pq.train_size must be >= 1, got {self.train_size}")
        if not 1 <= self.train_iters <= 10_000:
            raise ConfigError(f"pq.train_iters must be in 1..10000, got {self.train_iters}")


#: the largest ``search.r`` (longer runs of unchanged checks go through ``search.L_per_r``)
R_MAX = 15


@dataclass(frozen=True)
class SearchConfig:
    L: int = 64  # candidate list capacity
    T0: int = 16  # starting inner list size (see docs/ARCHITECTURE.md: chosen, measured)
    T_step: int = 4
    r: int = 3  # early termination after r unchanged top-k checks (1..15) ...
    #: ... or after L // L_per_r of them if that is more (0: r alone); see :attr:`r_eff`
    L_per_r: int = 16
    beta: float = 1.06  # final rerank threshold; used as the fixed-point beta_fx below
    beta_frac_bits: int = 8
    k: int = 10
    beam_width: int = 4  # DiskANN baseline W

    @property
    def beta_fx(self) -> int:
        """beta in unsigned fixed point with ``beta_frac_bits`` fraction bits."""
        return int(round(self.beta * (1 << self.beta_frac_bits)))

    @property
    def r_eff(self) -> int:
        """Unchanged top-k checks that stop the search: ``max(r, L // L_per_r)`` (no recall
        ceiling: a longer list also waits longer before it stops; docs/ARCHITECTURE.md)."""
        return max(self.r, self.L // self.L_per_r) if self.L_per_r else self.r

    def validate(self) -> None:
        if not 1 <= self.L <= 1 << 16:
            raise ConfigError(f"search.L must be in 1..65536, got {self.L}")
        if self.L_per_r < 0:
            raise ConfigError(f"search.L_per_r must be >= 0, got {self.L_per_r}")
        if not 1 <= self.k <= self.L:
            raise ConfigError(f"search.k must be in 1..L ({self.L}), got {self.k}")
        if not self.k <= self.T0 <= self.L:
            raise ConfigError(f"search.T0 must be in k..L ({self.k}..{self.L}), got {self.T0}")
        if self.T_step < 1:
            raise ConfigError(f"search.T_step must be >= 1, got {self.T_step}")
        if not 1 <= self.r <= R_MAX:
            raise ConfigError(f"search.r must be in 1..{R_MAX}, got {self.r}")
        if not 1.0 <= self.beta <= 16.0:
            raise ConfigError(f"search.beta must be in [1, 16], got {self.beta}")
        if not 0 <= self.beta_frac_bits <= 16:
            raise ConfigError(f"search.beta_frac_bits must be in 0..16, got {self.beta_frac_bits}")
        if self.beam_width < 1:
            raise ConfigError(f"search.beam_width must be >= 1, got {self.beam_width}")


@dataclass(frozen=True)
class BloomConfig:
    """Partitioned Bloom filter: ``hashes`` banks of ``bits // hashes`` bits each.

    Hash i maps a vertex id to one bit of bank i (H3 hash, then multiply-shift range
    reduction); see :mod:`proxima.golden.bloom` for the bit-exact definition.
    """

    bits: int = 32768
    hashes: int = 4
    seed: int = 0x5EED_B100

    @property
    def bank_bits(self) -> int:
        return self.bits // self.hashes

    @property
    def bank_addr_bits(self) -> int:
        return _clog2(self.bank_bits)

    def validate(self) -> None:
        if self.hashes < 1:
            raise ConfigError(f"bloom.hashes must be >= 1, got {self.hashes}")
        if self.bits % self.hashes:
            raise ConfigError(
                f"bloom.bits ({self.bits}) must be a multiple of bloom.hashes ({self.hashes})")
        if self.bank_bits < 2:
            raise ConfigError("bloom.bits // bloom.hashes must be >= 2")
        if self.bits > 1 << 32:
            raise ConfigError(f"bloom.bits must be <= 2**32, got {self.bits}")
        if not 0 <= self.seed < 1 << 32:
            raise ConfigError(f"bloom.seed must be in 0..2**32-1, got {self.seed}")


@dataclass(frozen=True)
class EngineConfig:
    queues: int = 4  # search queues (queries in flight)
    # bitonic sorter inputs (power of two).  16 in the default (FPGA) preset: a fully
    # pipelined 32-input sorter of 40-bit keys needs ~33k LUT4 and ~47k FF (over half of an
    # ECP5-85F's flip-flops) and did not close 150 MHz; the list of search.L = 64 is merged
    # in four chunks of 16 (merge_passes) and a row of graph.R = 32 neighbours as two
    # sub-batches of 16 (insert_merges)
    sorter_n: int = 16
    # network stages per register group of the pipelined sorter (hdl/sorter.py): a pass
    # takes sorter_pipeline_latency(sorter_depth, this) cycles (21 / 11 / 9 at 1 / 2 / 3 for
    # sorter_n = 16).  2 in the default (FPGA) preset: the 16-input sorter then needs 10.4k
    # FF instead of 16.9k and places at 129.2 MHz instead of 162.8 (the board clocks at
    # 100), and a merge takes 86 cycles instead of 136 (docs/RESOURCES.md); 1 in paper
    # (one stage per cycle at 1 GHz) and tiny
    sorter_stages_per_reg: int = 2
    pq_codes_per_cycle: int = 4
    exact_lanes: int = 4  # MACs in the exact-distance unit
    clock_mhz: float = 100.0
    id_bits: int = 20  # vertex id width: max vertices = 2**id_bits
    # width of the shared memory path (the NAND controller's response beat and the store
    # word, bits; golden.nandctl.path_word_bits): at least the engine's own beat, at most one
    # access (0: the engine's beat).  A wider path moves an access in fewer beats (each
    # context's reorder buffer narrows it again): with 64-bit beats the response stream, not
    # the NAND cores, bounds the default preset from 8 queues on (docs/RESOURCES.md)
    path_bits: int = 256
    # cycles from a grant of the NAND controller to its first beat: the read pipeline of
    # the backing store (golden.nandctl, read_latency; hdl.nandctl, "Store read latency"):
    # 1, the grant's address straight to a one-cycle read port whose output is the
    # response register; 2, the address registered; 3, the read data registered too.
    # 3 in the default (FPGA) preset: the ULX3S store (72 DP16KD and their multiplexer)
    # reaches 80.0 / 77.8 / 87.3 MHz at 1 / 2 / 3 (docs/RESOURCES.md, "Boards"); 2 in the
    # paper preset (a registered address into the page-buffer SRAM at 1 GHz); 1 in tiny
    # (the unit tests' behavioural store).  One cycle per access against tR's hundreds.
    store_latency: int = 3

    @property
    def max_vertices(self) -> int:
        return 1 << self.id_bits

    def validate(self) -> None:
        if not 1 <= self.queues <= 1 << 16:
            raise ConfigError(f"engine.queues must be in 1..65536, got {self.queues}")
        if not _is_pow2(self.sorter_n) or not 2 <= self.sorter_n <= 1 << 16:
            raise ConfigError(f"engine.sorter_n must be a power of two >= 2, got {self.sorter_n}")
        if self.sorter_stages_per_reg < 1:
            raise ConfigError(f"engine.sorter_stages_per_reg must be >= 1, "
                              f"got {self.sorter_stages_per_reg}")
        if self.pq_codes_per_cycle < 1:
            raise ConfigError("engine.pq_codes_per_cycle must be >= 1")
        if self.exact_lanes < 1:
            raise ConfigError("engine.exact_lanes must be >= 1")
        if not 4 <= self.id_bits <= 32:
            raise ConfigError(f"engine.id_bits must be in 4..32, got {self.id_bits}")
        if self.clock_mhz <= 0:
            raise ConfigError("engine.clock_mhz must be > 0")
        if self.path_bits and (not _is_pow2(self.path_bits) or self.path_bits < 8):
            raise ConfigError(
                f"engine.path_bits must be 0 or a power of two >= 8, got {self.path_bits}")
        if not 1 <= self.store_latency <= 3:
            raise ConfigError(
                f"engine.store_latency must be in 1..3, got {self.store_latency}")


@dataclass(frozen=True)
class NandConfig:
    cores: int = 16
    access_bytes: int = 128  # read granularity of one NAND core access
    page_bytes: int = 4096  # page size of one core
    pages_per_core: int = 1 << 16
    tR_ns: float = 300.0  # read latency of one access
    transfer_bytes_per_ns: float = 0.5  # per-core output bandwidth after tR
    raw_vector_cores: int = 4  # cores holding raw vectors (separate from index cores)

    @property
    def accesses_per_page(self) -> int:
        return self.page_bytes // self.access_bytes

    def validate(self) -> None:
        if not 1 <= self.cores <= 1 << 16:
            raise ConfigError(f"nand.cores must be in 1..65536, got {self.cores}")
        if not _is_pow2(self.access_bytes):
            raise ConfigError(f"nand.access_bytes must be a power of two, got {self.access_bytes}")
        if self.page_bytes < self.access_bytes or self.page_bytes % self.access_bytes:
            raise ConfigError(f"nand.page_bytes ({self.page_bytes}) must be a positive multiple "
                              f"of nand.access_bytes ({self.access_bytes})")
        if self.page_bytes > 1 << 24:
            raise ConfigError(f"nand.page_bytes must be <= 16 MiB, got {self.page_bytes}")
        if self.pages_per_core < 1:
            raise ConfigError(f"nand.pages_per_core must be >= 1, got {self.pages_per_core}")
        if self.tR_ns <= 0 or self.transfer_bytes_per_ns <= 0:
            raise ConfigError("nand.tR_ns and nand.transfer_bytes_per_ns must be > 0")
        if not 1 <= self.raw_vector_cores <= 1 << 16:
            raise ConfigError(f"nand.raw_vector_cores must be in 1..65536, "
                              f"got {self.raw_vector_cores}")


@dataclass(frozen=True)
class LayoutConfig:
    hot_fraction: float = 0.03  # hottest vertices whose frames carry neighbours' PQ codes
    reorder_sample: int = 2000  # base vectors searched to measure visit frequency
    reorder: bool = True
    hot_copies: int = 1  # copies of the hot region, core-rotated (golden/layout.py)
    # with hot_copies > 1: the ids 0..ceil(f*N)-1 whose normal frames (PQ codes) are copied
    # hot_copies - 1 times, core-rotated like the hot region (golden/layout.py); left out of
    # to_dict at its default, so configurations (and images) without copies are unchanged
    code_copy_fraction: float = field(default=1.0, metadata={"omit_default": True})

    def validate(self) -> None:
        if self.hot_copies < 1:
            raise ConfigError(f"layout.hot_copies must be >= 1, got {self.hot_copies}")
        if not 0.0 <= self.hot_fraction <= 1.0:
            raise ConfigError(f"layout.hot_fraction must be in [0, 1], got {self.hot_fraction}")
        if not 0.0 <= self.code_copy_fraction <= 1.0:
            raise ConfigError(f"layout.code_copy_fraction must be in [0, 1], got "
                              f"{self.code_copy_fraction}")
        if self.reorder_sample < 0:
            raise ConfigError("layout.reorder_sample must be >= 0")


@dataclass(frozen=True)
class CacheConfig:
    """Page cache (set-associative LRU) and stride prefetcher in front of the NAND model."""

    line_bytes: int = 128
    sets: int = 16
    ways: int = 4
    prefetch_depth: int = 2  # lines fetched ahead once the last strides agree
    prefetch_streams: int = 4  # independent stride detectors
    prefetch_window: int = 0  # largest line distance that trains a stream; 0: sets * ways

    @property
    def lines(self) -> int:
        return self.sets * self.ways

    @property
    def window(self) -> int:
        return self.prefetch_window or self.lines

    def validate(self) -> None:
        if not _is_pow2(self.line_bytes):
            raise ConfigError("cache.line_bytes must be a power of two")
        if not _is_pow2(self.sets) or self.sets > 1 << 20:
            raise ConfigError(f"cache.sets must be a power of two <= 2**20, got {self.sets}")
        if not 1 <= self.ways <= 1024:
            raise ConfigError(f"cache.ways must be in 1..1024, got {self.ways}")
        if self.prefetch_depth < 0 or self.prefetch_streams < 1:
            raise ConfigError("cache.prefetch_depth >= 0 and cache.prefetch_streams >= 1 required")
        if self.prefetch_window < 0:
            raise ConfigError("cache.prefetch_window must be >= 0 (0: sets * ways)")


_SECTIONS = {
    "vec": VecConfig,
    "graph": GraphConfig,
    "pq": PQConfig,
    "search": SearchConfig,
    "bloom": BloomConfig,
    "engine": EngineConfig,
    "nand": NandConfig,
    "layout": LayoutConfig,
    "cache": CacheConfig,
}


@dataclass(frozen=True)
class ProximaConfig:
    name: str = "default"
    vec: VecConfig = field(default_factory=VecConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    pq: PQConfig = field(default_factory=PQConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    bloom: BloomConfig = field(default_factory=BloomConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    nand: NandConfig = field(default_factory=NandConfig)
    layout: LayoutConfig = field(default_factory=LayoutConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)

    def __post_init__(self) -> None:
        self.validate()

    # ---- derived widths: the arithmetic contract between golden model and RTL ----------
    @property
    def dsub(self) -> int:
        """Vector elements per PQ subspace."""
        return self.vec.dim // self.pq.M

    @property
    def adt_raw_bits(self) -> int:
        """Width of an un-shifted ADT entry: sum over dsub of (a - b)**2 of elem_bits values."""
        return _bits_for(self.dsub * self.vec.elem_max ** 2)

    @property
    def adt_shift(self) -> int:
        """Right shift (round half up) that brings a raw ADT entry to ``pq.adt_bits``."""
        return max(0, self.adt_raw_bits - self.pq.adt_bits)

    @property
    def adt_max(self) -> int:
        return (1 << self.pq.adt_bits) - 1

    @property
    def pq_dist_bits(self) -> int:
        """Width of a PQ distance: sum of M saturated ADT entries (never overflows)."""
        return _bits_for(self.pq.M * self.adt_max)

    @property
    def exact_dist_bits(self) -> int:
        """Width of an exact squared L2 distance between two quantised vectors."""
        return _bits_for(self.vec.dim * self.vec.elem_max ** 2)

    @property
    def id_bits(self) -> int:
        return self.engine.id_bits

    @property
    def sort_key_bits(self) -> int:
        """Sorter key = (pq distance << id_bits) | id: orders by distance, then id."""
        return self.pq_dist_bits + self.id_bits

    @property
    def beta_product_bits(self) -> int:
        return self.pq_dist_bits + _bits_for(self.search.beta_fx)

    @property
    def cycle_ns(self) -> float:
        return 1000.0 / self.engine.clock_mhz

    @property
    def tR_cycles(self) -> int:
        """NAND read latency in engine clock cycles (rounded up)."""
        return max(1, math.ceil(self.nand.tR_ns / self.cycle_ns - 1e-9))

    @property
    def pq_code_bytes(self) -> int:
        return self.pq.M * self.pq.code_bits // 8

    @property
    def sorter_depth(self) -> int:
        """Stages of the bitonic network of ``engine.sorter_n = 2**s`` inputs: ``s (s + 1) / 2``."""
        s = self.engine.sorter_n.bit_length() - 1
        return s * (s + 1) // 2

    @property
    def sorter_latency(self) -> int:
        """Cycles of one pass through the RTL sorter: :func:`sorter_pipeline_latency` of
        :attr:`sorter_depth` in groups of ``engine.sorter_stages_per_reg`` network stages."""
        return sorter_pipeline_latency(self.sorter_depth, self.engine.sorter_stages_per_reg)

    @property
    def list_chunks(self) -> int:
        """Chunks of ``engine.sorter_n`` keys the candidate list of ``search.L`` is cut into."""
        return max(1, self.search.L // self.engine.sorter_n)

    def insert_merges(self, batch: int) -> int:
        """Merges of one candidate-list insert of ``batch`` keys (1..``graph.R``): a batch of
        more than ``engine.sorter_n`` keys is merged as consecutive sub-batches of at most
        ``sorter_n`` (the smallest ``L`` of the union do not depend on the grouping), so
        ``ceil(batch / sorter_n)``; an empty batch is not sent (0)."""
        if batch < 0:
            raise ConfigError(f"an insert batch has >= 0 keys, got {batch}")
        return -(-int(batch) // self.engine.sorter_n)

    @property
    def merge_passes(self) -> int:
        """Sorter passes per candidate-list merge (one batch, or one sub-batch of
        ``engine.sorter_n`` keys when ``graph.R`` is larger: :meth:`insert_merges`).

        One pass sorts the batch; then, for each of the ``j = list_chunks`` chunks of the list,
        in order, a pass sorts the element-wise minima of the chunk and the reversed carry
        (the chunk's new contents) and, except for the last chunk, a second pass sorts the
        maxima (the next carry): ``1 + (2 j - 1)`` passes, 2 when the list fits the sorter.
        """
        return 2 * self.list_chunks

    @property
    def insert_cycles(self) -> int:
        """:meth:`insert_cycles_for` the RTL sorter's ``sorter_latency``.  An insert costs
        :meth:`insert_merges` of them."""
        return self.insert_cycles_for(self.sorter_latency)

    #: Cycles of a candidate-list merge that is skipped, from its last INSERT beat to the
    #: next accepted command: the list is full and every key of the (sub-)batch is larger
    #: than its last key, so the merge cannot change it (golden
    #: :meth:`~proxima.golden.candidates.CandidateList.insert`'s plan; ``hdl/candidates.py``
    #: decides it from the INSERT beats, two cycles after the last, and sends nothing to
    #: the sorter)
    insert_skip_cycles = 4

    def insert_cycles_for(self, sorter_latency: int, chunks: int | None = None) -> int:
        """Cycles of one candidate-list merge after its last key (the RTL list with a sorter
        of ``sorter_latency`` that never stalls, ``hdl/candidates.py``, whose schedule this
        is): the batch pass and the chunk passes overlap two at a time, ``(j + 1) *
        sorter_latency + 7 j + 3`` for ``j = chunks`` (default ``list_chunks``); the RTL
        tests check it cycle for cycle."""
        j = self.list_chunks if chunks is None else int(chunks)
        return (j + 1) * int(sorter_latency) + 7 * j + 3

    def validate(self) -> None:
        if not isinstance(self.name, str):
            raise ConfigError(f"configuration name must be a string, got {self.name!r}")
        for name, typ in _SECTIONS.items():
            sec = getattr(self, name)
            if not isinstance(sec, typ):
                raise ConfigError(f"configuration section {name!r} must be a {typ.__name__}")
            _check_types(name, sec)
            sec.validate()
        if self.vec.dim % self.pq.M:
            raise ConfigError(
                f"vec.dim ({self.vec.dim}) must be divisible by pq.M ({self.pq.M})")
        if self.search.L > self.engine.sorter_n and self.search.L % self.engine.sorter_n:
            raise ConfigError(
                f"search.L ({self.search.L}) must fit the sorter or be a multiple of it "
                f"(engine.sorter_n = {self.engine.sorter_n}): the candidate list merges in "
                f"chunks of sorter_n keys")
        if self.search.beam_width > self.search.L:
            raise ConfigError("search.beam_width must be <= search.L")

    # ---- (de)serialisation ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field, except those marked ``omit_default`` while at their default (fields
        added later: the dict, JSON and image bytes of older configurations stay the same;
        :meth:`from_dict` fills them in)."""
        d = dataclasses.asdict(self)
        for name in _SECTIONS:
            for f in fields(getattr(self, name)):
                if f.metadata.get("omit_default") and getattr(getattr(self, name), f.name) \
                        == f.default:
                    del d[name][f.name]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProximaConfig":
        if not isinstance(d, dict):
            raise ConfigError("configuration must be a mapping")
        unknown = set(d) - set(_SECTIONS) - {"name"}
        if unknown:
            raise ConfigError(f"unknown configuration sections: {sorted(unknown)}")
        kwargs: dict[str, Any] = {"name": d.get("name", "custom")}
        for name, typ in _SECTIONS.items():
            sec = d.get(name, {})
            if not isinstance(sec, dict):
                raise ConfigError(f"configuration section {name!r} must be a mapping")
            known = {f.name for f in fields(typ)}
            bad = set(sec) - known
            if bad:
                raise ConfigError(f"unknown keys in section {name!r}: {sorted(bad)}")
            try:
                kwargs[name] = typ(**sec)
            except TypeError as e:
                raise ConfigError(f"bad section {name!r}: {e}") from None
        return cls(**kwargs)

    @classmethod
    def from_json(cls, s: str) -> "ProximaConfig":
        try:
            return cls.from_dict(json.loads(s))
        except json.JSONDecodeError as e:
            raise ConfigError(f"configuration is not valid JSON: {e}") from None

    def with_(self, **sections: dict[str, Any]) -> "ProximaConfig":
        """Copy with some fields of some sections replaced: ``cfg.with_(search={"L": 96})``."""
        kwargs: dict[str, Any] = {}
        for name, changes in sections.items():
            if name == "name":
                kwargs["name"] = changes
                continue
            if name not in _SECTIONS:
                raise ConfigError(f"unknown configuration section {name!r}")
            try:
                kwargs[name] = replace(getattr(self, name), **changes)
            except TypeError as e:
                raise ConfigError(f"bad keys for section {name!r}: {e}") from None
        return replace(self, **kwargs)

    def override(self, assignments: list[str], *, search_time: bool = False) -> "ProximaConfig":
        """Apply ``section.key=value`` strings (command line ``--set``).

        Values are parsed by the field's kind: integers (``0x..`` allowed), finite numbers,
        booleans (``true/false/yes/no/on/off/1/0``).  With ``search_time=True`` only the
        fields in :data:`SEARCH_TIME_FIELDS` may change (the rest are fixed by a built
        index); anything else raises :class:`ConfigError` naming the field.
        """
        changes: dict[str, dict[str, Any]] = {}
        if isinstance(assignments, str):
            assignments = [assignments]
        for a in assignments:
            if not isinstance(a, str) or "=" not in a or "." not in a.split("=", 1)[0]:
                raise ConfigError(f"expected section.key=value, got {a!r}")
            lhs, value = a.split("=", 1)
            sec, key = lhs.strip().split(".", 1)
            if sec not in _SECTIONS:
                raise ConfigError(f"unknown configuration section {sec!r} in {a!r}; "
                                  f"sections: {', '.join(_SECTIONS)}")
            typ = {f.name: f.type for f in fields(_SECTIONS[sec])}.get(key)
            if typ is None:
                raise ConfigError(f"unknown key {key!r} in section {sec!r}")
            if search_time and not is_search_time(sec, key):
                raise ConfigError(
                    f"{sec}.{key} is fixed when the index is built (it is stored in the image); "
                    f"at search time only {search_time_summary()} may change: rebuild the "
                    f"index to change {sec}.{key}")
            current = getattr(getattr(self, sec), key)
            value = value.strip()
            if isinstance(current, bool):
                low = value.lower()
                if low in ("1", "true", "yes", "on"):
                    v: Any = True
                elif low in ("0", "false", "no", "off"):
                    v = False
                else:
                    raise ConfigError(f"bad value for {sec}.{key}: {value!r} (want true or false)")
            elif isinstance(current, int):
                try:
                    v = int(value.replace("_", ""), 0)
                except ValueError:
                    raise ConfigError(f"bad value for {sec}.{key}: {value!r} "
                                      f"(want an integer)") from None
            elif isinstance(current, float):
                try:
                    v = float(value)
                except ValueError:
                    raise ConfigError(f"bad value for {sec}.{key}: {value!r} "
                                      f"(want a number)") from None
                if not math.isfinite(v):
                    raise ConfigError(f"bad value for {sec}.{key}: {value!r} "
                                      f"(want a finite number)")
            else:  # pragma: no cover - every field is bool, int or float
                v = value
            changes.setdefault(sec, {})[key] = v
        return self.with_(**changes)


#: Fields a built index leaves free: ``section -> keys`` (``None``: the whole section).
#: The search algorithm's parameters, the visited-set filter, the page cache and the
#: timing model (engine organisation, clock, NAND tR and transfer rate) may change at
#: search time; vector format, graph, PQ, id width, NAND geometry and layout are in the image.
SEARCH_TIME_FIELDS: dict[str, frozenset[str] | None] = {
    "search": None,
    "bloom": None,
    "cache": None,
    "engine": frozenset({"queues", "sorter_n", "sorter_stages_per_reg", "pq_codes_per_cycle", "exact_lanes",
                         "clock_mhz", "path_bits", "store_latency"}),
    "nand": frozenset({"tR_ns", "transfer_bytes_per_ns"}),
}


def is_search_time(section: str, key: str) -> bool:
    """True if ``section.key`` may be overridden on a built index."""
    if section not in SEARCH_TIME_FIELDS:
        return False
    keys = SEARCH_TIME_FIELDS[section]
    return keys is None or key in keys


def search_time_summary() -> str:
    return ", ".join(f"{s}.*" if k is None else ", ".join(f"{s}.{x}" for x in sorted(k))
                     for s, k in SEARCH_TIME_FIELDS.items())


def _tiny() -> ProximaConfig:
    return ProximaConfig(
        name="tiny",
        vec=VecConfig(dim=16),
        graph=GraphConfig(R=8, build_L=16),
        pq=PQConfig(M=4, adt_bits=12, train_size=2000, train_iters=10),
        search=SearchConfig(L=16, T0=4, T_step=2, r=2, k=4, beam_width=2),
        bloom=BloomConfig(bits=1024, hashes=2),
        engine=EngineConfig(queues=2, sorter_n=16, sorter_stages_per_reg=1,
                            pq_codes_per_cycle=2, exact_lanes=2, id_bits=16, store_latency=1),
        nand=NandConfig(cores=4, raw_vector_cores=2, pages_per_core=1 << 10),
        layout=LayoutConfig(reorder_sample=64),
        cache=CacheConfig(sets=4, ways=2),
    )


def _paper() -> ProximaConfig:
    return ProximaConfig(
        name="paper",
        vec=VecConfig(dim=128),
        graph=GraphConfig(R=64, build_L=128, alpha=1.2),
        pq=PQConfig(M=32, adt_bits=16),
        search=SearchConfig(L=256, T0=16, T_step=4, r=3, beta=1.06, k=10, beam_width=4),
        bloom=BloomConfig(bits=98304, hashes=8),  # 12 kB SRAM, 8 hash functions
        engine=EngineConfig(queues=256, sorter_n=256, sorter_stages_per_reg=1,
                            pq_codes_per_cycle=32, exact_lanes=1,
                            clock_mhz=1000.0, id_bits=27, path_bits=1024, store_latency=2),
        nand=NandConfig(cores=512, access_bytes=128, page_bytes=16384, pages_per_core=1 << 16,
                        tR_ns=300.0, transfer_bytes_per_ns=0.5, raw_vector_cores=128),
        layout=LayoutConfig(hot_fraction=0.03, reorder_sample=10_000, hot_copies=8),
        cache=CacheConfig(sets=256, ways=8, prefetch_depth=4, prefetch_streams=8),
    )


PRESETS = {
    "tiny": _tiny,
    "default": ProximaConfig,
    "paper": _paper,
}


def preset(name: str) -> ProximaConfig:
    """Return a named preset: ``tiny``, ``default`` (FPGA) or ``paper``."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None
