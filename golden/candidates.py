"""Golden model of one query's candidate list ``C`` of Algorithm 1 (the spec of ``hdl/candidates``).

The list is exactly the ``C`` of :func:`proxima.golden.search.search` (read that function's
docstring): at most ``L = cfg.search.L`` entries ``(key, expanded)`` kept in ascending order of
the sorter key ``key = (pq_dist << id_bits) | id`` (:mod:`proxima.golden.sorter`).

Operations (each one is a command of the RTL block)
---------------------------------------------------
``reset(entry_key)``     ``C = [(entry_key, False)]`` (step 1 of Algorithm 1).
``insert(new_keys)``     ``C = first L of sort(C + [(k, False) for k in new_keys])``; an entry
                         keeps its expanded flag; entries past ``L`` are dropped for good.
                         At most ``R = cfg.graph.R`` keys per batch (one neighbour row); an
                         empty batch leaves ``C`` unchanged.  Returns the batch's merge
                         plan (below).
``next_unexpanded(T)``   position of the first entry among the first ``min(T, len(C))`` whose
                         flag is clear, or ``None`` (step 2a's choice; ``None`` means step 2b,
                         a convergence check, is due).
``mark_expanded(pos)``   set the flag of entry ``pos``.
``select(T)``            ``next_unexpanded(T)`` and, if found, ``mark_expanded`` of it: the
                         RTL's select command, returning ``(found, pos, key)``.

Merge plan (the RTL's cycles, not its results): the hardware merges a batch as consecutive
sub-batches of ``engine.sorter_n`` keys in arrival order (``cfg.insert_merges``).  A
sub-batch's merge is *skipped* when ``C`` already holds ``L`` entries and every key of the
sub-batch is larger than ``C``'s last key (after the sub-batches before it): the merge cannot
change ``C``, and the RTL spends ``cfg.insert_skip_cycles`` on it instead of
``cfg.insert_cycles`` and sends nothing to the sorter.  :meth:`CandidateList.insert` returns
one flag per sub-batch (``True``: skipped); the timing models read them
(:attr:`proxima.golden.search.SearchResult.merge_skips`).

Why flags may travel with keys: ``search`` keeps the flags in a dict indexed by vertex id.
Every vertex enters ``C`` at most once per query (the visited filter rejects it afterwards,
and a false positive only ever rejects), so ids in ``C`` are unique and a flag attached to
its key is the same thing.  This class enforces the precondition: a batch that repeats an id
already in ``C`` (or twice in itself) raises :class:`CandidateError`, as do keys out of range
and the all-ones padding key (reserved for empty slots by the sorter contract).
``tests/golden/test_candidates.py`` replays Algorithm 1 with this class and gets results,
counters and events identical to :func:`proxima.golden.search.search`.
"""

from __future__ import annotations

from typing import Iterable

from proxima.config import ProximaConfig

from .sorter import pad_key

__all__ = ["CandidateError", "CandidateList"]


class CandidateError(ValueError):
    """A bad operation on a candidate list (key range, duplicate id, batch size, position)."""


class CandidateList:
    """Sorted list of at most ``cfg.search.L`` ``(key, expanded)`` entries; see module doc."""

    def __init__(self, cfg: ProximaConfig):
        self.cfg = cfg
        self.L = cfg.search.L
        self.R = cfg.graph.R
        self.id_bits = cfg.id_bits
        self.key_bits = cfg.sort_key_bits
        self.pad = pad_key(cfg)
        self._keys: list[int] = []
        self._exp: list[bool] = []

    # ---- views ----------------------------------------------------------------------
    @property
    def keys(self) -> tuple[int, ...]:
        return tuple(self._keys)

    @property
    def expanded(self) -> tuple[bool, ...]:
        return tuple(self._exp)

    @property
    def ids(self) -> tuple[int, ...]:
        mask = (1 << self.id_bits) - 1
        return tuple(k & mask for k in self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def entries(self) -> list[tuple[int, bool]]:
        return list(zip(self._keys, self._exp))

    def padded(self) -> list[tuple[int, bool]]:
        """All ``L`` slots as the RTL holds them: entries, then ``(pad_key, False)``."""
        return self.entries() + [(self.pad, False)] * (self.L - len(self._keys))

    # ---- operations -----------------------------------------------------------------
    def _check_key(self, key) -> int:
        try:
            k = int(key)
        except (TypeError, ValueError):
            raise CandidateError(f"key must be an integer, got {key!r}") from None
        if k < 0 or k >> self.key_bits:
            raise CandidateError(f"key {k:#x} does not fit sort_key_bits = {self.key_bits}")
        if k == self.pad:
            raise CandidateError("the all-ones key is reserved for empty slots")
        return k

    def reset(self, entry_key: int) -> None:
        self._keys = [self._check_key(entry_key)]
        self._exp = [False]

    def insert(self, new_keys: Iterable[int]) -> tuple[bool, ...]:
        """Insert a batch; returns its merge plan: per sub-batch of ``engine.sorter_n`` keys
        in arrival order, ``True`` when its merge is skipped (module docstring)."""
        new = [self._check_key(k) for k in new_keys]
        if len(new) > self.R:
            raise CandidateError(f"insert batch of {len(new)} keys exceeds R = {self.R}")
        mask = (1 << self.id_bits) - 1
        present = {k & mask for k in self._keys}
        for k in new:
            if k & mask in present:
                raise CandidateError(f"id {k & mask} is already in the candidate list")
            present.add(k & mask)
        plan = []
        n = self.cfg.engine.sorter_n
        for b in range(0, len(new), n):
            sub = new[b:b + n]
            plan.append(len(self._keys) == self.L and min(sub) > self._keys[-1])
            merged = sorted([(k, e) for k, e in zip(self._keys, self._exp)]
                            + [(k, False) for k in sub])[:self.L]
            self._keys = [k for k, _ in merged]
            self._exp = [e for _, e in merged]
        return tuple(plan)

    def next_unexpanded(self, T: int) -> int | None:
        T = int(T)
        if T < 0:
            raise CandidateError(f"T must be >= 0, got {T}")
        for pos in range(min(T, len(self._keys))):
            if not self._exp[pos]:
                return pos
        return None

    def mark_expanded(self, pos: int) -> None:
        pos = int(pos)
        if not 0 <= pos < len(self._keys):
            raise CandidateError(f"position {pos} outside the list (length {len(self._keys)})")
        self._exp[pos] = True

    def select(self, T: int) -> tuple[bool, int, int]:
        """``(found, pos, key)``; marks the entry expanded.  ``(False, 0, 0)`` if none."""
        pos = self.next_unexpanded(T)
        if pos is None:
            return False, 0, 0
        self.mark_expanded(pos)
        return True, pos, self._keys[pos]
