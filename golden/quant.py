"""Float -> hardware integer quantisation (one global affine map) and its recall cost.

The engine stores and compares unsigned ``cfg.vec.elem_bits``-bit elements (uint8).  Float
data are mapped to that format by ONE affine map shared by every dimension, every base
vector and every query, fitted on the base set:

``lo``     the ``p_lo`` percentile of all base values (default ``P_LO`` = 0.01 %)
``hi``     the ``p_hi`` percentile of all base values (default ``P_HI`` = 99.99 %)
``scale``  ``(hi - lo) / elem_max`` with ``elem_max = 2**elem_bits - 1``

``quantise(x) = clip(round_half_even((x - lo) / scale), 0, elem_max)``

computed in float64 exactly as written (subtract, then divide: not a multiply by a
reciprocal), with NumPy's ``rint`` (round half to even); percentiles use NumPy's default
``linear`` method on the values converted to float64.  ``dequantise(q) = lo + q * scale``
(float64, returned as float32).  The defaults clip only the extreme 0.01 % tails on each
side, so outliers do not stretch the grid; because the map is the same for every
dimension, squared L2 between quantised vectors is ``1 / scale**2`` times squared L2
between the dequantised ones, and nearest-neighbour order changes only through
rounding and clipping.  :func:`recall_loss_report` measures what that costs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from proxima.config import ProximaConfig
from proxima.golden.datasets import ground_truth, recall_at_k

__all__ = [
    "QuantiserError",
    "P_LO",
    "P_HI",
    "Quantiser",
    "RecallLossReport",
    "recall_loss_report",
]

P_LO = 0.01  # percent
P_HI = 99.99  # percent
_CHUNK_ROWS = 1 << 15


class QuantiserError(ValueError):
    """A quantiser that cannot be fitted or applied (degenerate range, bad input, ...)."""


def _uint_dtype(bits: int) -> np.dtype:
    for dt in (np.uint8, np.uint16, np.uint32):
        if bits <= np.dtype(dt).itemsize * 8:
            return np.dtype(dt)
    raise QuantiserError(f"elem_bits {bits} too wide")


@dataclass(frozen=True)
class Quantiser:
    """``q = clip(rint((x - lo) / scale), 0, 2**bits - 1)`` (see the module docstring)."""

    lo: float
    scale: float
    bits: int

    def __post_init__(self) -> None:
        if not isinstance(self.bits, (int, np.integer)) or not 1 <= self.bits <= 32:
            raise QuantiserError(f"bits must be an integer in 1..32, got {self.bits!r}")
        if not math.isfinite(self.lo):
            raise QuantiserError(f"lo must be finite, got {self.lo}")
        if not (math.isfinite(self.scale) and self.scale > 0.0):
            raise QuantiserError(f"scale must be finite and > 0, got {self.scale}")

    @property
    def elem_max(self) -> int:
        return (1 << self.bits) - 1

    @property
    def hi(self) -> float:
        """The value that maps to ``elem_max``."""
        return self.lo + self.scale * self.elem_max

    @property
    def dtype(self) -> np.dtype:
        return _uint_dtype(self.bits)

    @classmethod
    def fit(cls, x, cfg: ProximaConfig, p_lo: float = P_LO, p_hi: float = P_HI,
            max_rows: int | None = None) -> "Quantiser":
        """Fit on base vectors ``x`` (``(n, dim)`` float).  ``p_lo``/``p_hi`` are percents.

        ``max_rows``: if given and ``n > max_rows``, fit on every ``ceil(n / max_rows)``-th
        row (deterministic subsample, for bases too big to sort in memory).
        """
        if not 0.0 <= p_lo < p_hi <= 100.0:
            raise QuantiserError(f"need 0 <= p_lo < p_hi <= 100, got {p_lo}, {p_hi}")
        a = np.asarray(x)
        if a.ndim != 2 or a.size == 0:
            raise QuantiserError(f"fit needs a non-empty (n, dim) array, got shape {a.shape}")
        if a.dtype.kind != "f":
            raise QuantiserError(f"fit needs float data, got {a.dtype}")
        if max_rows is not None:
            if max_rows < 1:
                raise QuantiserError(f"max_rows must be >= 1, got {max_rows}")
            a = a[::max(1, -(-a.shape[0] // max_rows))]
        v = a.astype(np.float64).ravel()
        if not np.isfinite(v).all():
            raise QuantiserError("fit data contain NaN or infinity")
        lo, hi = (float(t) for t in np.percentile(v, [p_lo, p_hi]))
        bits = cfg.vec.elem_bits
        if not hi > lo:
            raise QuantiserError(f"degenerate value range: percentiles {p_lo}% and {p_hi}% "
                                 f"are both {lo}")
        return cls(lo, (hi - lo) / ((1 << bits) - 1), bits)

    def quantise(self, x) -> np.ndarray:
        """Map float values to unsigned ``bits``-bit integers (shape preserved)."""
        a = np.asarray(x)
        if a.dtype.kind not in "fiu":
            raise QuantiserError(f"quantise needs numeric data, got {a.dtype}")
        out = np.empty(a.shape, dtype=self.dtype)
        flat_in = a.reshape(a.shape[0], -1) if a.ndim >= 2 else a.reshape(1, -1)
        flat_out = out.reshape(flat_in.shape)
        for r in range(0, flat_in.shape[0], _CHUNK_ROWS):
            c = flat_in[r:r + _CHUNK_ROWS].astype(np.float64)
            if not np.isfinite(c).all():
                raise QuantiserError("quantise input contains NaN or infinity")
            y = np.rint((c - self.lo) / self.scale)
            flat_out[r:r + _CHUNK_ROWS] = np.clip(y, 0, self.elem_max)
        return out

    def dequantise(self, q) -> np.ndarray:
        """``lo + q * scale`` as float32 (the centre of q's quantisation cell)."""
        a = np.asarray(q)
        if a.dtype.kind not in "iu":
            raise QuantiserError(f"dequantise needs integer codes, got {a.dtype}")
        if a.size and (int(a.min()) < 0 or int(a.max()) > self.elem_max):
            raise QuantiserError(f"codes outside 0..{self.elem_max}")
        return (self.lo + a.astype(np.float64) * self.scale).astype(np.float32)

    # ---- (de)serialisation: Index.quantiser holds (lo, scale) ------------------------
    def as_tuple(self) -> tuple[float, float]:
        return (float(self.lo), float(self.scale))

    @classmethod
    def from_tuple(cls, t: tuple[float, float], cfg: ProximaConfig) -> "Quantiser":
        return cls(float(t[0]), float(t[1]), cfg.vec.elem_bits)

    def to_dict(self) -> dict:
        return {"scheme": "global-affine", "lo": self.lo, "scale": self.scale,
                "bits": self.bits, "hi": self.hi,
                "formula": "q = clip(rint((x - lo) / scale), 0, 2**bits - 1)"}

    @classmethod
    def from_dict(cls, d: dict) -> "Quantiser":
        try:
            return cls(float(d["lo"]), float(d["scale"]), int(d["bits"]))
        except (KeyError, TypeError, ValueError) as e:
            raise QuantiserError(f"bad quantiser description: {e}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass
class RecallLossReport:
    """Recall@k of exact search over quantised vectors against the float ground truth."""

    quantiser: Quantiser
    n: int
    nq: int
    recall: dict[int, float] = field(default_factory=dict)
    clipped_fraction: float = 0.0  # base values outside [lo, hi]

    def to_dict(self) -> dict:
        return {"quantiser": self.quantiser.to_dict(), "n": self.n, "nq": self.nq,
                "recall": {str(k): v for k, v in sorted(self.recall.items())},
                "clipped_fraction": self.clipped_fraction}

    def __str__(self) -> str:
        rs = ", ".join(f"recall@{k} = {v:.4f}" for k, v in sorted(self.recall.items()))
        return (f"{self.n} base x {self.nq} queries, {self.quantiser.bits}-bit global affine "
                f"(lo {self.quantiser.lo:.6g}, scale {self.quantiser.scale:.6g}, clipped "
                f"{100 * self.clipped_fraction:.4f}% of values): {rs}")


def recall_loss_report(base_f, queries_f, gt_float, k: int | Sequence[int] = (1, 10, 100), *,
                       cfg: ProximaConfig | None = None, quantiser: Quantiser | None = None,
                       p_lo: float = P_LO, p_hi: float = P_HI) -> RecallLossReport:
    """How much recall the quantisation costs.

    Fits a :class:`Quantiser` on ``base_f`` (unless ``quantiser`` is given), quantises
    base and queries, runs exact search on the integers (:func:`ground_truth`, ties to the
    smaller id) and returns recall@k against ``gt_float`` (``(nq, >= max k)`` ids; ``None``
    computes the exact float ground truth here) for each ``k``.
    """
    cfg = ProximaConfig() if cfg is None else cfg
    base_f = np.asarray(base_f)
    queries_f = np.asarray(queries_f)
    ks = [int(k)] if np.isscalar(k) else [int(v) for v in k]
    if not ks or min(ks) < 1:
        raise QuantiserError(f"k must be >= 1, got {k}")
    kmax = max(ks)
    if gt_float is None:
        gt_float, _ = ground_truth(base_f, queries_f, kmax)
    gt = np.asarray(gt_float)
    if gt.ndim != 2 or gt.shape[0] != queries_f.shape[0] or gt.shape[1] < kmax:
        raise QuantiserError(f"ground truth shape {gt.shape} does not cover "
                             f"{queries_f.shape[0]} queries x k={kmax}")
    qz = quantiser if quantiser is not None else Quantiser.fit(base_f, cfg, p_lo, p_hi)
    qb = qz.quantise(base_f)
    qq = qz.quantise(queries_f)
    found, _ = ground_truth(qb, qq, kmax)
    v = base_f.astype(np.float64)
    clipped = float(np.count_nonzero((v < qz.lo) | (v > qz.hi))) / v.size
    return RecallLossReport(qz, int(base_f.shape[0]), int(queries_f.shape[0]),
                            {kk: recall_at_k(found, gt, kk) for kk in ks}, clipped)
