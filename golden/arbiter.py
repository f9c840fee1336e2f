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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["ArbiterError", "ArbiterStep", "LookaheadArbiterModel", "RoundRobinArbiterModel",
           "round_robin_pick"]


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


@dataclass(frozen=True)
class ArbiterStep:
    """What happened in one cycle."""

    grant: int | None  # requester whose input transfer happened (its ready was high)
    output: tuple[int, Any] | None  # (grant, payload) leaving on the output, if any


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
        if len(valid) != self.n:
            raise ArbiterError(f"expected {self.n} valid flags, got {len(valid)}")
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

    @property
    def out_valid(self) -> bool:
        return self.core.out_valid

    @property
    def last(self) -> int:
        return self.core.last

    def step(self, valid, payload, out_ready: bool) -> ArbiterStep:
        if len(valid) != self.n:
            raise ArbiterError(f"expected {self.n} valid flags, got {len(valid)}")
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
