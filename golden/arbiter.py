"""Cycle-level golden model of the round-robin stream arbiter.

The arbiter (:class:`proxima.hdl.arbiter.RoundRobinArbiter`) merges ``n`` input streams
into one output stream and tags each transfer with the index of the requester that sent
it.  Its behaviour is defined here, cycle by cycle, from the signals sampled in a cycle
(before the clock edge that ends it):

State
    ``last``      index of the most recently granted requester, initially ``n - 1`` so the
                  very first search starts at requester 0;
    ``out_valid`` whether the output register holds a transfer, initially false;
    ``out``       that transfer ``(grant, payload)``.

One cycle, given ``valid[0..n-1]`` and ``out_ready``
    1. ``load = not out_valid or out_ready`` -- the output register is free or is being
       emptied in this cycle.
    2. If ``load``, the grant is the first ``k`` with ``valid[k]`` in the search order
       ``last + 1, last + 2, ..., last + n`` (mod ``n``): the search starts right after the
       last granted index and wraps around.  Requester ``grant`` sees ``ready`` high (its
       transfer happens in this cycle); every other requester sees ``ready`` low.
       If not ``load``, or no ``valid`` is high, no requester is ready.
    3. At the clock edge: if ``out_valid and out_ready`` the output transfer happens and
       the register empties; then, if there was a grant, the register takes
       ``(grant, payload[grant])``, ``out_valid`` becomes true and ``last = grant``.

Consequences: one transfer per cycle at most in and out, a full throughput of one per
cycle when ``out_ready`` stays high, output latency of exactly one cycle, and no
starvation -- a requester that keeps ``valid`` high is granted after at most ``n - 1``
grants to others.

The RTL's default variant registers the grant one cycle ahead (150 MHz at 16 requesters on
an ECP5); its spec, :class:`LookaheadArbiterModel`, is this model driven with the requester
*offered* the grant.

Above ``flat_max`` requesters (default 16) the RTL is a tree of such registered-grant nodes
(``group`` requesters per node, default 8),
each with a two-entry output queue whose ``ready`` is a register, so that no signal crosses
more than one node in a cycle; its spec is :class:`TreeArbiterModel` (built from
:class:`QueuedArbiterNodeModel`), with latency ``2 * levels`` cycles, one transfer per
cycle under load, round robin per node, and a stated bound on the wait
(:attr:`TreeArbiterModel.wait_bound`).  :func:`arbiter_model` returns the spec of each RTL
variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["ArbiterError", "ArbiterStep", "LookaheadArbiterModel", "QueuedArbiterNodeModel",
           "RoundRobinArbiterModel", "TreeArbiterModel", "TreeStep", "arbiter_model",
           "check_flat_max", "check_group", "round_robin_pick", "tree_groups", "uses_tree",
           "DEFAULT_FLAT_MAX", "DEFAULT_GROUP"]


class ArbiterError(ValueError):
    """Bad input to the arbiter model."""


def round_robin_pick(valid: Sequence[bool], last: int) -> int | None:
    """First index ``k`` with ``valid[k]`` searching ``last+1, ..., last+n`` mod ``n``."""
    n = len(valid)
    for step in range(1, n + 1):
        k = (last + step) % n
        if valid[k]:
            return k
    return None


def _check_step_args(n: int, valid: Sequence[bool], payload: Sequence[Any] | None = None):
    """The argument check every model's ``step`` makes: ``n`` valid flags (and payloads)."""
    if len(valid) != n:
        raise ArbiterError(f"expected {n} valid flags, got {len(valid)}")
    if payload is not None and len(payload) != n:
        raise ArbiterError(f"expected {n} payloads, got {len(payload)}")


@dataclass(frozen=True)
class ArbiterStep:
    """What happened in one cycle."""

    grant: int | None  # requester whose input transfer happened (its ready was high)
    output: tuple[int, Any] | None  # (grant, payload) leaving on the output, if any

    @property
    def granted(self) -> tuple[int, ...]:
        """The requesters whose input transfer happened (as :attr:`TreeStep.grants`)."""
        return () if self.grant is None else (self.grant,)


class RoundRobinArbiterModel:
    """Cycle-accurate model; call :meth:`step` once per clock cycle."""

    def __init__(self, n: int):
        if int(n) < 1:
            raise ArbiterError(f"arbiter needs at least one requester, got {n}")
        self.n = int(n)
        self.last = self.n - 1
        self.out_valid = False
        self.out: tuple[int, Any] | None = None

    def ready(self, valid: Sequence[bool], out_ready: bool) -> list[bool]:
        """The ``ready`` each requester sees in a cycle with these inputs (no state change)."""
        g = self._grant(valid, out_ready)
        return [k == g for k in range(self.n)]

    def _grant(self, valid: Sequence[bool], out_ready: bool) -> int | None:
        _check_step_args(self.n, valid)
        if self.out_valid and not out_ready:
            return None
        return round_robin_pick([bool(v) for v in valid], self.last)

    def step(self, valid: Sequence[bool], payload: Sequence[Any], out_ready: bool) -> ArbiterStep:
        """Advance one cycle; ``payload[k]`` matters only where ``valid[k]``."""
        if len(payload) != self.n:
            raise ArbiterError(f"expected {self.n} payloads, got {len(payload)}")
        grant = self._grant(valid, out_ready)
        output = None
        if self.out_valid and out_ready:
            output = self.out
            self.out_valid = False
            self.out = None
        if grant is not None:
            self.out = (grant, payload[grant])
            self.out_valid = True
            self.last = grant
        return ArbiterStep(grant=grant, output=output)


class LookaheadArbiterModel:
    """Spec of ``RoundRobinArbiter(lookahead=True)`` (the default RTL variant): the
    :class:`RoundRobinArbiterModel` above, unchanged, driven with the
    requester *offered* the grant instead of the valids of the cycle.

    The offer is decided one cycle ahead with the golden rule,
    ``round_robin_pick(valid of that cycle, last after that cycle)``, in every cycle in which
    no requester is offered or the offer is consumed (``not out_valid or out_ready``); an
    offer that is not consumed is held.  In a cycle, the golden model sees only the offered
    requester as valid (if it is valid), so it transfers iff it is valid and the output
    register can load.  The pick searches ``last + 1, ..., last``: after a transfer the same
    requester is offered again iff nobody else is valid (a lone requester streams at one
    transfer per cycle).  The output register, ``last`` and the bound "a waiting requester
    is passed by at most ``n - 1`` grants to others" are the golden model's.  Requesters
    obey the stream rule (valid and payload held until the transfer);
    :class:`~proxima.golden.arbiter.ArbiterError` otherwise.  ``step`` returns the golden
    step: ``grant`` is the requester whose transfer happens."""

    def __init__(self, n: int):
        self.core = RoundRobinArbiterModel(n)
        self.n = self.core.n
        self.offered: int | None = None
        self.must_be_valid = False  # the offer was a waiting request (not a transfer)

    #: the output register and the last grant are the golden model's
    out_valid = property(lambda self: self.core.out_valid)
    last = property(lambda self: self.core.last)

    def step(self, valid, payload, out_ready: bool) -> ArbiterStep:
        _check_step_args(self.n, valid)
        valid = [bool(v) for v in valid]
        k = self.offered
        if k is not None and self.must_be_valid and not valid[k]:
            raise ArbiterError(f"requester {k} dropped valid before its transfer")
        vis = [j == k and valid[j] for j in range(self.n)]
        load = not self.core.out_valid or bool(out_ready)
        s = self.core.step(vis, payload, out_ready)
        if k is None or load:  # decide the offer of the next cycle
            self.offered = round_robin_pick(valid, self.core.last)
            self.must_be_valid = self.offered is not None and self.offered != s.grant
        return s


# ---- tree of queued nodes (the RTL for n > flat_max) ------------------------------------
#: requesters per node of the tree (RTL option ``group``): ECP5-85F, 256 requesters in
#: nodes of 8 (three levels) 183.5 MHz, in nodes of 16 (two levels) 140.9 MHz
DEFAULT_GROUP = 8
#: the largest arbiter kept flat (one node, latency 2; RTL option ``flat_max``): the flat
#: registered-grant arbiter measured 168.4 MHz at 16 requesters, 137.2 at 32
DEFAULT_FLAT_MAX = 16

def tree_groups(n: int, group: int) -> list[int]:
    """Requester counts of the leaves of a tree over ``n`` requesters with groups of
    ``group``: ``n // group`` full groups, then the remainder (if any).  Leaf ``j`` holds
    requesters ``j * group ... j * group + size - 1``."""
    n, group = int(n), int(group)
    full, rest = divmod(n, group)
    return [group] * full + ([rest] if rest else [])


def check_group(group) -> int:
    """``group`` as an int: a power of two >= 2; :class:`ArbiterError` otherwise."""
    if isinstance(group, bool) or not isinstance(group, int) or group < 2 \
            or group & (group - 1):
        raise ArbiterError(f"group must be a power of two >= 2, got {group!r}")
    return group


class QueuedArbiterNodeModel:
    """One node of the tree arbiter (:class:`TreeArbiterModel`): the registered-grant pick
    of :class:`LookaheadArbiterModel` in front of a two-entry output queue whose ``ready``
    is a register.

    State: ``last`` (initially ``n - 1``), the ``offered`` requester (``None`` initially)
    and the ``queue`` of up to two ``(grant, payload)`` entries (head first).

    One cycle, given ``valid[0..n-1]``, ``payload`` and ``out_ready``:

    1. ``load = len(queue) < 2`` (the queue's state at the start of the cycle: a pop in
       this cycle does not make room for a push in this cycle).  Requester ``k`` sees
       ``ready = load and offered == k`` -- registers only.
    2. The input transfer happens iff ``load``, ``offered`` is not ``None`` and
       ``valid[offered]``: ``grant = offered``.
    3. Output: ``out_valid = len(queue) > 0``, the output is ``queue[0]``; it transfers iff
       ``out_valid and out_ready`` (popped).
    4. At the clock edge: pop, then push ``(grant, payload[grant])`` and ``last = grant``
       if there was a grant; if ``offered is None or load`` a new offer is decided:
       ``offered = round_robin_pick(valid, last)`` (``last`` after this cycle); else the
       offer is held.

    So the offer of a cycle is decided in the cycle before, exactly as in
    :class:`LookaheadArbiterModel` (with ``load`` from the queue instead of the one-entry
    register): the pick searches ``last + 1, ..., last``, a lone requester is re-offered
    after its transfer (one transfer per cycle while it keeps ``valid``; a stale re-offer
    is used up without a transfer), and a requester that keeps ``valid`` high is passed by
    at most ``n - 1`` grants to others.  Throughput: one transfer per cycle in and out while
    ``out_ready`` stays high (the queue then holds one entry: pushed and popped in the same
    cycle); after ``out_ready`` low the queue fills to two and ``ready`` drops one cycle
    later.  Requesters obey the stream rule: a requester offered the grant while waiting
    (not re-offered after its own transfer) must keep ``valid`` until its transfer,
    :class:`ArbiterError` otherwise.
    """

    def __init__(self, n: int):
        if int(n) < 1:
            raise ArbiterError(f"arbiter needs at least one requester, got {n}")
        self.n = int(n)
        self.last = self.n - 1
        self.offered: int | None = None
        self.must_be_valid = False
        self.queue: list[tuple[int, Any]] = []

    @property
    def out_valid(self) -> bool:
        return bool(self.queue)

    @property
    def head(self) -> tuple[int, Any] | None:
        return self.queue[0] if self.queue else None

    def ready(self) -> list[bool]:
        """``ready`` of each requester in this cycle (state only, no input)."""
        load = len(self.queue) < 2
        return [load and k == self.offered for k in range(self.n)]

    def step(self, valid: Sequence[bool], payload: Sequence[Any], out_ready: bool) -> ArbiterStep:
        _check_step_args(self.n, valid, payload)
        valid = [bool(v) for v in valid]
        k = self.offered
        if k is not None and self.must_be_valid and not valid[k]:
            raise ArbiterError(f"requester {k} dropped valid before its transfer")
        load = len(self.queue) < 2
        grant = k if (k is not None and load and valid[k]) else None
        output = self.queue.pop(0) if (out_ready and self.queue) else None
        if grant is not None:
            self.queue.append((grant, payload[grant]))
            self.last = grant
        if k is None or load:
            self.offered = round_robin_pick(valid, self.last)
            self.must_be_valid = self.offered is not None and self.offered != grant
        return ArbiterStep(grant=grant, output=output)


@dataclass(frozen=True)
class TreeStep:
    """What happened in one cycle of a :class:`TreeArbiterModel`: the requesters whose input
    transfer happened (at most one per leaf, ascending) and the output transfer."""

    grants: tuple[int, ...]
    output: tuple[int, Any] | None

    @property
    def granted(self) -> tuple[int, ...]:
        return self.grants


class TreeArbiterModel:
    """Spec of ``RoundRobinArbiter(n, ..., group=G)`` when it is a tree (:func:`uses_tree`:
    ``n > max(flat_max, G)``, default ``n > 16`` with ``G = 8``).

    Structure: the requesters are cut into leaves of ``G`` (:func:`tree_groups`; ``G`` a
    power of two, the last leaf may be smaller); leaf ``j`` is a
    :class:`QueuedArbiterNodeModel` over requesters ``j*G ...``; the leaves' output queues
    are the requesters of the *upper* arbiter: a :class:`QueuedArbiterNodeModel` over the
    ``g = ceil(n / G)`` leaves if ``g <= G``, else (recursively) a :class:`TreeArbiterModel`
    over them with the same ``G``.  The upper arbiter's output queue is the output.  Every
    payload leaving a leaf is ``(local grant, data)``; the output grant is
    ``upper grant * G + local grant`` (in the RTL: the bits concatenated).

    Cycle rule: all nodes step in the same cycle from their state at the start of it.  The
    leaf ``j`` sees ``out_ready`` = the upper arbiter's ``ready`` for input ``j`` (state
    only: the upper arbiter's offer and the room in its queue), so a leaf's head is popped
    exactly when the upper arbiter takes it.  No signal crosses more than one node in a
    cycle.

    Consequences (for a tree of ``L`` levels of nodes):

    * latency: a request raised in cycle ``t`` with everything idle is offered in ``t + 1``
      (its input transfer), is at the head of its leaf's queue in ``t + 2``, is taken by
      the next level in ``t + 3`` ... and is on the output in ``t + 2 L`` (``L = 2``:
      ``t + 4``);
    * throughput: one output per cycle while requests wait and ``out_ready`` stays high
      (each node moves one entry per cycle: a queue holding one entry is popped and pushed
      in the same cycle, a full one takes a new entry in the cycle after a pop); several
      leaves may take an input in the same cycle;
    * order: round robin among the leaves that hold an entry, and inside each leaf; not a
      global round robin over the requesters;
    * no starvation: while a requester keeps ``valid`` high it is passed by at most
      :attr:`wait_bound` input transfers of other requesters (derivation in
      :meth:`_wait_bound`).
    """

    def __init__(self, n: int, group: int):
        self.group = check_group(group)
        self.n = int(n)
        if self.n <= self.group:
            raise ArbiterError(f"a tree needs more requesters ({self.n}) than the group size "
                               f"({self.group}); use a single node")
        self.sizes = tree_groups(self.n, self.group)
        self.leaves = [QueuedArbiterNodeModel(s) for s in self.sizes]
        g = len(self.sizes)
        self.upper: QueuedArbiterNodeModel | TreeArbiterModel = (
            QueuedArbiterNodeModel(g) if g <= self.group else TreeArbiterModel(g, self.group))
        #: node levels from a requester to the output
        self.levels = 1 + (self.upper.levels if isinstance(self.upper, TreeArbiterModel)
                           else 1)
        #: cycles from a request's ``valid`` to its output, everything idle
        self.latency = 2 * self.levels
        self.wait_bound = self._wait_bound()

    def _wait_bound(self) -> int:
        """Bound on the input transfers of other requesters while requester ``r`` of leaf
        ``j`` keeps ``valid`` high (``G``: group, ``g``: leaves).

        * Leaf ``j`` passes ``r`` at most ``G - 1`` times (node round robin).
        * Each leaf-``j`` transfer needs room in its queue; its queue holds at most 2 when
          ``r`` rises and receives at most ``G`` entries until ``r``'s, so the upper
          arbiter pops leaf ``j`` at most ``G + 1`` times meanwhile.  While leaf ``j``'s
          queue is not empty it is a requester of the upper arbiter that keeps ``valid``
          until popped: the upper arbiter makes at most ``U`` transfers from other leaves
          before each pop and before ``r``'s transfer (``U = g - 1`` for an upper node,
          its own ``wait_bound`` for an upper tree): ``(G + 2) U`` in those spells.  While
          it is empty, leaf ``j`` has room and ``r`` waits, so its next transfer comes
          within 2 cycles (a stale offer is used up in the first); this happens at most
          ``G`` times, and the upper arbiter takes at most ``P`` inputs per cycle (``P =
          1`` for a node, the number of its leaves for a tree): ``2 G P``.
        * Another leaf ``i`` takes at most ``2 + pops_i`` inputs (its queue's room when
          ``r`` rises plus what the upper arbiter takes from it): ``2 (g - 1)`` plus the
          upper arbiter's transfers above.

        Total ``(G - 1) + 2 (g - 1) + (G + 2) U + 2 G P``.
        """
        G, g = self.group, len(self.sizes)
        if isinstance(self.upper, TreeArbiterModel):
            u, p = self.upper.wait_bound, len(self.upper.leaves)
        else:
            u, p = g - 1, 1
        return (G - 1) + 2 * (g - 1) + (G + 2) * u + 2 * G * p

    @property
    def out_valid(self) -> bool:
        return self.upper.out_valid

    def ready(self) -> list[bool]:
        """``ready`` of each requester in this cycle (state only)."""
        return [r for leaf in self.leaves for r in leaf.ready()]

    @property
    def head(self) -> tuple[int, Any] | None:
        h = self.upper.head
        return None if h is None else self._global(h)

    def _global(self, entry):
        g_up, (local, data) = entry
        return (g_up * self.group + local, data)

    def step(self, valid: Sequence[bool], payload: Sequence[Any], out_ready: bool) -> TreeStep:
        _check_step_args(self.n, valid, payload)
        lv = [leaf.out_valid for leaf in self.leaves]
        lp = [leaf.head for leaf in self.leaves]
        up_ready = self.upper.ready()
        up = self.upper.step(lv, lp, out_ready)
        grants = []
        for j, leaf in enumerate(self.leaves):
            lo = j * self.group
            s = leaf.step(valid[lo:lo + leaf.n], payload[lo:lo + leaf.n], up_ready[j])
            if s.grant is not None:
                grants.append(lo + s.grant)
        output = None if up.output is None else self._global(up.output)
        return TreeStep(grants=tuple(grants), output=output)


def check_flat_max(flat_max) -> int:
    """``flat_max`` as an int >= 1; :class:`ArbiterError` otherwise."""
    if isinstance(flat_max, bool) or not isinstance(flat_max, int) or flat_max < 1:
        raise ArbiterError(f"flat_max must be an int >= 1, got {flat_max!r}")
    return flat_max


def uses_tree(n: int, *, lookahead: bool = True, group: int | None = DEFAULT_GROUP,
              flat_max: int = DEFAULT_FLAT_MAX) -> bool:
    """Whether ``RoundRobinArbiter(n, ...)`` is a tree: ``lookahead``, ``group`` given and
    ``n > max(flat_max, group)`` (a tree has at least two leaves)."""
    if group is not None:
        check_group(group)
    check_flat_max(flat_max)
    return bool(lookahead) and group is not None and int(n) > max(flat_max, group)


def arbiter_model(n: int, *, lookahead: bool = True, group: int | None = DEFAULT_GROUP,
                  flat_max: int = DEFAULT_FLAT_MAX):
    """The spec of ``RoundRobinArbiter(n, ..., lookahead=, group=, flat_max=)``:
    :class:`TreeArbiterModel` if :func:`uses_tree`, else :class:`LookaheadArbiterModel`
    (``lookahead``) or :class:`RoundRobinArbiterModel`."""
    if uses_tree(n, lookahead=lookahead, group=group, flat_max=flat_max):
        return TreeArbiterModel(n, group)
    if not lookahead:
        return RoundRobinArbiterModel(n)
    return LookaheadArbiterModel(n)
