"""Deterministic page-granular trace model: the golden twin of the RTL page cache.

See docs/FIELD.md, "Page-cache trace model (RTL contract)", for the rules bit for bit.
The model is built from the same policy classes as the threaded field
(:class:`~proxima.golden.field.policy.LRUCache` per set with budget ``ways`` and size 1
per line, and :class:`~proxima.golden.field.policy.StridePrefetcher` over line numbers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from proxima.config import CacheConfig

from .policy import LRUCache, StridePrefetcher

__all__ = ["AccessResult", "TraceStats", "PageCacheModel", "field_addresses"]


@dataclass(frozen=True)
class AccessResult:
    addr: int
    line: int  # addr // line_bytes
    set_index: int  # line % sets
    hit: bool
    prefetch_hit: bool  # the hit line was brought in by a prefetch and not demanded before
    fill: int | None  # line fetched by the demand miss (== line), None on a hit
    evicted: int | None  # line evicted by the demand fill, if any
    prefetches: tuple[int, ...]  # prefetch line fetches issued by this access, in order
    prefetch_evicted: tuple[int | None, ...]  # line each prefetch fill evicted (aligned)
    stream: int  # stream table entry the access used
    stream_action: str  # "repeat" | "confirm" | "train" | "alloc"


@dataclass
class TraceStats:
    accesses: int = 0
    hits: int = 0
    misses: int = 0
    prefetch_issued: int = 0
    prefetch_used: int = 0
    prefetch_wasted: int = 0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.accesses if self.accesses else 0.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("accesses", "hits", "misses", "prefetch_issued",
                                               "prefetch_used", "prefetch_wasted")}


@dataclass
class PageCacheModel:
    """Set-associative, true-LRU page cache with a stride prefetcher, one access at a time.

    ``window``: the largest |line distance| that trains an existing stream; default
    ``cache_cfg.lines`` (sets * ways).  ``CacheConfig`` has no field for it yet.
    ``addr_bits``: if given, addresses must be < 2**addr_bits and prefetch targets at or
    beyond line 2**addr_bits / line_bytes are skipped like negative ones (None: unbounded).
    """

    cfg: CacheConfig
    window: int | None = None
    addr_bits: int | None = None
    stats: TraceStats = field(default_factory=TraceStats)

    def __post_init__(self) -> None:
        self.cfg.validate()
        if self.window is None:
            self.window = getattr(self.cfg, "prefetch_window", None) or self.cfg.lines
        self._line_limit = (None if self.addr_bits is None
                            else (1 << self.addr_bits) // self.cfg.line_bytes)
        self.reset()

    def reset(self) -> None:
        self._sets = [LRUCache(self.cfg.ways) for _ in range(self.cfg.sets)]
        self.prefetcher = StridePrefetcher(self.cfg.prefetch_streams, self.cfg.prefetch_depth,
                                           self.window)
        self.stats = TraceStats()

    def resident(self, line: int) -> bool:
        return line in self._sets[line % self.cfg.sets]

    def set_state(self, set_index: int) -> list[tuple[int, bool]]:
        """(line, prefetched-and-unused) of one set, least recently used first."""
        s = self._sets[set_index]
        return [(k, s.is_prefetched(k)) for k in s.keys()]

    def _fill(self, line: int, prefetched: bool) -> int | None:
        ev = self._sets[line % self.cfg.sets].put(line, None, 1, prefetched)
        if not ev:
            return None
        (e,) = ev
        if e.prefetched:
            self.stats.prefetch_wasted += 1
        return int(e.key)

    def access(self, addr: int) -> AccessResult:
        addr = int(addr)
        if addr < 0 or (self.addr_bits is not None and addr >> self.addr_bits):
            raise ValueError(f"address {addr} outside 0 .. 2**{self.addr_bits} - 1")
        line = addr // self.cfg.line_bytes
        si = line % self.cfg.sets
        s = self._sets[si]
        st = self.stats
        st.accesses += 1
        if line in s:
            hit, fill, evicted = True, None, None
            pf_hit = s.take_prefetched(line)
            s.get(line)
            st.hits += 1
            st.prefetch_used += pf_hit
        else:
            hit, pf_hit, fill = False, False, line
            st.misses += 1
            evicted = self._fill(line, False)
        d = self.prefetcher.observe(line)
        issued: list[int] = []
        pev: list[int | None] = []
        for t in d.targets:
            if t < 0 or (self._line_limit is not None and t >= self._line_limit) \
                    or self.resident(t):
                continue
            issued.append(t)
            pev.append(self._fill(t, True))
        st.prefetch_issued += len(issued)
        return AccessResult(addr, line, si, hit, pf_hit, fill, evicted, tuple(issued),
                            tuple(pev), d.stream, d.action)

    def run(self, trace: Iterable[int]) -> list[AccessResult]:
        return [self.access(a) for a in trace]


def field_addresses(shape, itemsize: int, indices) -> list[int]:
    """Byte addresses (C order, base 0) of element ``indices`` of a field of ``shape``.

    Turns a field access trace into the address trace the page-cache model consumes.
    """
    import numpy as np

    idx = np.asarray(indices, dtype=np.int64)
    if idx.ndim == 2:
        flat = np.ravel_multi_index(tuple(idx.T), tuple(shape))
    else:
        flat = idx
    return [int(x) * int(itemsize) for x in flat]
