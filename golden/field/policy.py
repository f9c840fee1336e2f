"""Pure, deterministic cache policies shared by the threaded field and the trace model.

Nothing here does I/O, takes locks or reads clocks: the same objects drive
:class:`proxima.golden.field.Field` (keys are cache blocks / element indices) and
:class:`proxima.golden.field.PageCacheModel` (keys are cache lines), so the two cannot
disagree about eviction order or prefetch decisions.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Hashable, NamedTuple

__all__ = ["LRUCache", "Evicted", "StridePrefetcher", "PrefetchDecision"]

_ACTIONS = ("repeat", "confirm", "train", "alloc")
_new_evicted = tuple.__new__  # Evicted(...) without the generated __new__ (hot path)


class Evicted(NamedTuple):
    key: Hashable
    value: Any
    nbytes: int
    prefetched: bool  # True: brought in by a prefetch and never demanded (a wasted prefetch)


class LRUCache:
    """True-LRU map with a byte budget.

    Each entry has a size in bytes and a *prefetched* flag.  ``put`` inserts (or replaces)
    an entry at the most-recently-used end and then evicts from the least-recently-used end
    until the total size fits the budget; an entry larger than the whole budget is not kept
    (it is returned as evicted and nothing else is touched).  ``get`` moves an entry to the
    MRU end; ``peek`` and ``__contains__`` do not change the order.

    With ``budget = ways`` and every size 1 this is exactly one set of a set-associative
    cache with true LRU replacement (used that way by :class:`PageCacheModel`).
    """

    __slots__ = ("budget", "used", "_d")

    def __init__(self, budget: int) -> None:
        if int(budget) < 0:
            raise ValueError(f"LRU budget must be >= 0 bytes, got {budget}")
        self.budget = int(budget)
        self.used = 0
        self._d: OrderedDict[Hashable, list] = OrderedDict()  # key -> [value, nbytes, prefetched]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)

    def keys(self) -> list:
        """Keys from least to most recently used."""
        return list(self._d)

    def get(self, key: Hashable, default: Any = None) -> Any:
        e = self._d.get(key)
        if e is None:
            return default
        self._d.move_to_end(key)
        return e[0]

    def peek(self, key: Hashable, default: Any = None) -> Any:
        e = self._d.get(key)
        return default if e is None else e[0]

    def is_prefetched(self, key: Hashable) -> bool:
        e = self._d.get(key)
        return bool(e is not None and e[2])

    def take_prefetched(self, key: Hashable) -> bool:
        """Clear the entry's prefetched flag; return what it was (False if absent)."""
        e = self._d.get(key)
        if e is None or not e[2]:
            return False
        e[2] = False
        return True

    def put(self, key: Hashable, value: Any, nbytes: int, prefetched: bool = False) -> list[Evicted]:
        nbytes = int(nbytes)
        if nbytes < 0:
            raise ValueError("entry size must be >= 0")
        old = self._d.pop(key, None)
        if old is not None:
            self.used -= old[1]
        if nbytes > self.budget:
            return [Evicted(key, value, nbytes, prefetched)]
        out: list[Evicted] = []
        while self.used + nbytes > self.budget:
            k, (v, n, p) = self._d.popitem(last=False)
            self.used -= n
            out.append(_new_evicted(Evicted, (k, v, n, p)))
        self._d[key] = [value, nbytes, prefetched]
        self.used += nbytes
        return out

    def pop(self, key: Hashable) -> Evicted | None:
        e = self._d.pop(key, None)
        if e is None:
            return None
        self.used -= e[1]
        return Evicted(key, e[0], e[1], e[2])

    def clear(self) -> list[Evicted]:
        out = [Evicted(k, v, n, p) for k, (v, n, p) in self._d.items()]
        self._d.clear()
        self.used = 0
        return out


@dataclass(frozen=True)
class PrefetchDecision:
    stream: int  # stream table entry used
    action: str  # "repeat" | "confirm" | "train" | "alloc"
    stride: int  # the entry's stride after the update
    targets: tuple[int, ...]  # key + stride * k, k = 1..depth (only on "confirm")


class StridePrefetcher:
    """A table of ``streams`` stride detectors; each remembers (valid, last key, stride).

    ``observe(key)`` applies the first rule that matches, scanning entries by index:

    0. **repeat**: a valid entry has ``last == key``: (lowest index) it only becomes the
       most recently used entry; no state change, no prefetch.
    1. **confirm**: a valid entry has ``stride != 0`` and ``last + stride == key`` (lowest
       index): ``last = key``; targets ``key + stride*k`` for ``k = 1..depth`` in that order.
    2. **train**: the valid entry with the smallest ``|key - last|`` among those with
       ``|key - last| <= window`` (``window=None``: no limit; ties: lowest index):
       ``stride = key - last``, ``last = key``; no targets.
    3. **alloc**: the lowest-index invalid entry, else the least recently used entry, is
       overwritten with ``valid=1, last=key, stride=0``; no targets.

    The entry a rule used becomes the most recently used one (true LRU over entries, all
    entries start invalid in LRU order 0..streams-1).  Targets are candidates only: the
    caller drops those that are out of range, already resident or in flight.
    """

    def __init__(self, streams: int, depth: int, window: int | None = None) -> None:
        if int(streams) < 1 or int(depth) < 0:
            raise ValueError(f"need streams >= 1 and depth >= 0, got {streams}, {depth}")
        if window is not None and int(window) < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        self.streams = int(streams)
        self.depth = int(depth)
        self.window = None if window is None else int(window)
        self.reset()

    def reset(self) -> None:
        self.valid = [False] * self.streams
        self.last = [0] * self.streams
        self.stride = [0] * self.streams
        self.order = list(range(self.streams))  # LRU first

    def _touch(self, s: int) -> None:
        self.order.remove(s)
        self.order.append(s)

    def observe(self, key: int) -> PrefetchDecision:
        s, code, stride = self.observe_raw(key)
        targets = tuple(key + stride * k for k in range(1, self.depth + 1)) if code == 1 else ()
        return PrefetchDecision(s, _ACTIONS[code], stride, targets)

    def observe_raw(self, key: int) -> tuple[int, int, int]:
        """``observe`` without building the decision: (entry, action code, stride).

        Action codes: 0 repeat, 1 confirm, 2 train, 3 alloc (targets only on 1).
        One pass over the table computes every rule's candidate; rule priority decides.
        """
        valid, last, stride = self.valid, self.last, self.stride
        window = self.window
        confirm = best = -1
        bestd = 0
        for s in range(self.streams):
            if not valid[s]:
                continue
            ls = last[s]
            if ls == key:
                self.order.remove(s)
                self.order.append(s)
                return s, 0, stride[s]
            st = stride[s]
            if confirm < 0 and st != 0 and ls + st == key:
                confirm = s
            d = key - ls if key > ls else ls - key
            if (window is None or d <= window) and (best < 0 or d < bestd):
                best, bestd = s, d
        if confirm >= 0:
            s, code = confirm, 1
            last[s] = key
        elif best >= 0:
            s, code = best, 2
            stride[s] = key - last[s]
            last[s] = key
        else:
            s = valid.index(False) if False in valid else self.order[0]
            code = 3
            valid[s], last[s], stride[s] = True, key, 0
        self.order.remove(s)
        self.order.append(s)
        return s, code, stride[s]

    def state(self) -> list[tuple[bool, int, int]]:
        """(valid, last, stride) per entry, for comparison with the RTL's stream table."""
        return list(zip(self.valid, self.last, self.stride))
