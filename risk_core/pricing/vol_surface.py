"""Volatility surfaces from mark implied vols, one per underlying.

Each expiry's smile is kept as total variance ``w = iv^2 t`` over log-moneyness
``k = ln(K / F)``, interpolated linearly in ``k`` with flat volatility beyond the wings.
Between expiries, total variance is interpolated linearly in time at the same ``k``
(calendar-arbitrage free when the input is); before the first and after the last expiry
the nearest smile's volatility is kept flat. Used where a scenario or a missing mark
needs a volatility.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class _Smile:
    t: float
    k: FloatArray  #: sorted log-moneyness
    iv: FloatArray

    def vol(self, k: FloatArray) -> FloatArray:
        return np.interp(k, self.k, self.iv)  # flat beyond the wings

    def total_variance(self, k: FloatArray) -> FloatArray:
        return self.vol(k) ** 2 * self.t


@dataclass(frozen=True)
class VolSurface:
    smiles: dict[str, tuple[_Smile, ...]]  #: per underlying, by increasing expiry

    @classmethod
    def from_points(
        cls,
        underlying: ArrayLike,
        t: ArrayLike,
        strike: ArrayLike,
        forward: ArrayLike,
        iv: ArrayLike,
    ) -> VolSurface:
        """Build from option marks; points with non-finite or non-positive input are
        ignored (they are the validation's business), duplicates averaged."""
        u = np.asarray(underlying, dtype=object)
        tt, kk, ff, vv = (np.asarray(a, dtype=np.float64) for a in (t, strike, forward, iv))
        good = np.isfinite(tt) & np.isfinite(kk) & np.isfinite(ff) & np.isfinite(vv)
        good &= (tt > 0) & (kk > 0) & (ff > 0) & (vv > 0)
        smiles: dict[str, tuple[_Smile, ...]] = {}
        for name in sorted(set(u[good].tolist())):
            mine = good & (u == name)
            expiries = np.unique(tt[mine])
            built = []
            for expiry in expiries:
                sel = mine & (tt == expiry)
                k = np.log(kk[sel] / ff[sel])
                keys, inverse = np.unique(np.round(k, 12), return_inverse=True)
                sums = np.bincount(inverse, weights=vv[sel])
                counts = np.bincount(inverse)
                built.append(_Smile(float(expiry), keys, sums / counts))
            smiles[str(name)] = tuple(built)
        return cls(smiles)

    def vol(
        self, underlying: str, t: ArrayLike, strike: ArrayLike, forward: ArrayLike
    ) -> FloatArray:
        """Volatility at expiry ``t`` (years), strike and forward; arrays broadcast."""
        smiles = self.smiles.get(underlying)
        if not smiles:
            raise KeyError(f"no volatility surface for {underlying}")
        tt, kk, ff = np.broadcast_arrays(
            np.asarray(t, dtype=np.float64),
            np.asarray(strike, dtype=np.float64),
            np.asarray(forward, dtype=np.float64),
        )
        k = np.log(kk / ff)
        times = np.array([s.t for s in smiles])
        out = np.empty(k.shape)
        before = tt <= times[0]
        after = tt >= times[-1]
        out[before] = smiles[0].vol(k[before])
        out[after] = smiles[-1].vol(k[after])
        middle = ~(before | after)
        if middle.any():
            j = np.searchsorted(times, tt[middle], side="right")  # times[j-1] < t < times[j]
            km, tm = k[middle], tt[middle]
            w = np.empty(km.shape)
            for i in np.unique(j):
                sel = j == i
                lo, hi = smiles[i - 1], smiles[i]
                a = (tm[sel] - lo.t) / (hi.t - lo.t)
                w[sel] = (1 - a) * lo.total_variance(km[sel]) + a * hi.total_variance(km[sel])
            out[middle] = np.sqrt(w / tm)
        return out
