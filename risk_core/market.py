"""The instrument table: one row per instrument with everything a valuation needs.

Joins instruments, marks and index prices into NumPy arrays (sorted by instrument_id so
that results never depend on input row order). Each instrument is valued per contract:

* ``units``: underlying units (coins) one contract represents today. ``contract_unit =
  base``: ``contract_size``; ``usd``: ``contract_size / forward`` (the base size ``q`` of
  an inverse future of USD notional ``contract_size``).
* ``forward``: the price the instrument moves with: the option's ``underlying_price``,
  the future's or perpetual's own mark, the spot index.
* Options carry strike, time to expiry in years (365-day, from the business date 00:00
  UTC) and volatility (the mark IV, solved from ``mark_price`` where it is empty).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from risk_core.conventions import SECONDS_PER_YEAR
from risk_core.pricing import black76
from risk_core.pricing.implied_vol import BELOW_INTRINSIC, implied_vol
from risk_core.pricing.vol_surface import VolSurface

KIND_OPTION, KIND_FUTURE, KIND_PERPETUAL, KIND_SPOT = 0, 1, 2, 3
KIND_CODES = {
    "option": KIND_OPTION,
    "future": KIND_FUTURE,
    "perpetual": KIND_PERPETUAL,
    "spot": KIND_SPOT,
}

FloatArray = NDArray[np.float64]


class MarketDataError(ValueError):
    """Market data that cannot be turned into a valuation (names instruments and rule)."""


def valuation_time(business_date: dt.date) -> dt.datetime:
    """The end-of-day snapshot: 00:00 UTC of the business date."""
    return dt.datetime.combine(business_date, dt.time(0, 0), tzinfo=dt.UTC)


@dataclass(frozen=True)
class InstrumentTable:
    """Arrays of equal length, one entry per instrument, sorted by instrument_id."""

    instrument_id: NDArray[np.object_]
    underlying: NDArray[np.object_]
    underlyings: tuple[str, ...]  #: sorted distinct underlyings
    underlying_code: NDArray[np.int32]  #: index into ``underlyings``
    kind: NDArray[np.int8]
    inverse: NDArray[np.bool_]
    units: FloatArray  #: underlying units per contract
    forward: FloatArray  #: USD
    index: FloatArray  #: USD index price of the underlying
    strike: FloatArray  #: USD, 0 for non-options
    t: FloatArray  #: years to expiry, 0 for perpetual and spot
    is_call: NDArray[np.bool_]
    sigma: FloatArray  #: decimal volatility, 0 for non-options
    iv_solved: NDArray[np.bool_]
    mark_price: FloatArray  #: as in marks (coin for inverse options)
    frame: pl.DataFrame  #: the joined instrument frame, same order

    def __len__(self) -> int:
        return len(self.instrument_id)

    @property
    def is_option(self) -> NDArray[np.bool_]:
        return np.asarray(self.kind == KIND_OPTION, dtype=np.bool_)

    def codes(self, instrument_ids: pl.Series) -> NDArray[np.int64]:
        """Row numbers of ``instrument_ids`` in this table (every id must exist)."""
        lookup = pl.DataFrame(
            {"instrument_id": self.instrument_id.tolist(), "_code": np.arange(len(self))}
        )
        joined = pl.DataFrame({"instrument_id": instrument_ids}).join(
            lookup, on="instrument_id", how="left", maintain_order="left"
        )
        missing = joined["_code"].is_null()
        if missing.any():
            names = joined.filter(missing)["instrument_id"].unique().sort().head(5).to_list()
            raise MarketDataError(f"unknown instrument(s): {', '.join(names)}")
        return joined["_code"].to_numpy().astype(np.int64)

    def value_usd(self) -> FloatArray:
        """Today's USD value per contract: option premium, spot holding; 0 for futures."""
        value = np.zeros(len(self))
        option = self.is_option
        value[option] = (
            black76.price(
                self.forward[option],
                self.strike[option],
                self.t[option],
                self.sigma[option],
                self.is_call[option],
            )
            * self.units[option]
        )
        spot = self.kind == KIND_SPOT
        value[spot] = self.units[spot] * self.forward[spot]
        return value

    def unit_greeks(self) -> black76.Greeks:
        """Greeks per contract in USD (delta in underlying units per contract)."""
        option = self.is_option
        n = len(self)
        delta = np.where(option, 0.0, self.units)
        gamma, vega, theta = np.zeros(n), np.zeros(n), np.zeros(n)
        g = black76.greeks(
            self.forward[option],
            self.strike[option],
            self.t[option],
            self.sigma[option],
            self.is_call[option],
        )
        u = self.units[option]
        delta[option] = g.delta * u
        gamma[option] = g.gamma * u
        vega[option] = g.vega * u
        theta[option] = g.theta * u
        return black76.Greeks(self.value_usd(), delta, gamma, vega, theta)


#: How far below intrinsic (fraction of the forward) a price may sit and still count as
#: "at intrinsic" (a few Deribit ticks of 0.0001 coin).
INTRINSIC_TOLERANCE = 5e-4


def _surface_vols(
    frame: pl.DataFrame,
    quoted: NDArray[np.bool_],
    sigma: FloatArray,
    t: FloatArray,
    strike: FloatArray,
    forward: FloatArray,
    missing: NDArray[np.bool_],
    wanted: NDArray[np.bool_],
) -> tuple[FloatArray, NDArray[np.bool_]]:
    """Surface vols of the ``wanted`` rows among ``missing``; and which have no surface."""
    underlying = frame["underlying"].to_numpy()
    surface = VolSurface.from_points(
        underlying[quoted], t[quoted], strike[quoted], forward[quoted], sigma[quoted]
    )
    rows = np.flatnonzero(missing)[wanted]
    vols = np.zeros(rows.size)
    no_surface = np.zeros(int(missing.sum()), dtype=bool)
    for name in sorted(set(underlying[rows].tolist())):
        mine = underlying[rows] == name
        if name not in surface.smiles:
            no_surface[np.flatnonzero(wanted)[mine]] = True
            continue
        r = rows[mine]
        vols[mine] = surface.vol(name, t[r], strike[r], forward[r])
    return vols, no_surface


def build_instrument_table(
    instruments: pl.DataFrame,
    marks: pl.DataFrame,
    index_prices: pl.DataFrame,
    business_date: dt.date,
) -> InstrumentTable:
    """Join the landing frames into an :class:`InstrumentTable` (validated input expected).

    Raises :class:`MarketDataError` for an instrument without a mark or index price, or
    an option whose IV is empty and cannot be solved from its price.
    """
    frame = (
        instruments.join(marks, on="instrument_id", how="left")
        .join(index_prices, on="underlying", how="left")
        .sort("instrument_id")
    )
    for column, what in (("mark_price", "mark"), ("index_price", "index price")):
        missing = frame.filter(pl.col(column).is_null())
        if missing.height:
            names = missing["instrument_id"].head(5).to_list()
            raise MarketDataError(f"{missing.height} instrument(s) without {what}: {names}")

    kind = frame["kind"].replace_strict(KIND_CODES, return_dtype=pl.Int8).to_numpy()
    inverse = (frame["settlement"] == "inverse").to_numpy()
    option = kind == KIND_OPTION
    index = frame["index_price"].to_numpy().astype(np.float64)
    mark = frame["mark_price"].to_numpy().astype(np.float64)
    underlying_price = frame["underlying_price"].fill_null(0.0).to_numpy().astype(np.float64)
    forward = np.select(
        [option, kind == KIND_SPOT], [underlying_price, index], default=mark
    ).astype(np.float64)
    if np.any(forward <= 0.0):
        bad = frame.filter(pl.Series(forward <= 0.0))["instrument_id"].head(5).to_list()
        raise MarketDataError(f"non-positive forward or price for {bad}")

    size = frame["contract_size"].to_numpy().astype(np.float64)
    units = np.where((frame["contract_unit"] == "usd").to_numpy(), size / forward, size)

    now = valuation_time(business_date)
    seconds = (
        frame.select((pl.col("expiry") - pl.lit(now)).dt.total_microseconds() / 1e6)
        .to_series()
        .fill_null(0.0)
        .to_numpy()
    )
    t = np.maximum(seconds / SECONDS_PER_YEAR, 0.0)
    strike = frame["strike"].fill_null(0.0).to_numpy().astype(np.float64)
    is_call = (frame["option_type"].fill_null("") == "C").to_numpy()

    sigma = frame["mark_iv"].to_numpy().astype(np.float64)
    sigma = np.where(option, sigma, 0.0)
    missing_iv = option & np.isnan(sigma)
    if missing_iv.any():
        usd_price = np.where(inverse, mark * forward, mark)[missing_iv]
        solved = implied_vol(
            usd_price, forward[missing_iv], strike[missing_iv], t[missing_iv], is_call[missing_iv]
        )
        vol = solved.vol.copy()
        intrinsic = np.maximum(
            np.where(is_call, forward - strike, strike - forward)[missing_iv], 0.0
        )
        # A price at intrinsic within a few ticks has lost its time value to rounding: its
        # volatility comes from the surface of the other options of the underlying.
        at_intrinsic = (solved.status == BELOW_INTRINSIC) & (
            usd_price >= intrinsic - INTRINSIC_TOLERANCE * forward[missing_iv]
        )
        unsolvable = ~solved.ok & ~at_intrinsic
        if at_intrinsic.any():
            vol[at_intrinsic], no_surface = _surface_vols(
                frame, option & ~missing_iv, sigma, t, strike, forward, missing_iv, at_intrinsic
            )
            unsolvable |= no_surface
        if unsolvable.any():
            ids = frame["instrument_id"].to_numpy()[missing_iv][unsolvable][:5].tolist()
            raise MarketDataError(
                f"{int(unsolvable.sum())} option(s) without mark_iv whose mark_price admits "
                f"no implied volatility: {ids}"
            )
        sigma[missing_iv] = vol

    underlyings = tuple(sorted(frame["underlying"].unique().to_list()))
    underlying_code = (
        frame["underlying"]
        .replace_strict({u: i for i, u in enumerate(underlyings)}, return_dtype=pl.Int32)
        .to_numpy()
    )

    return InstrumentTable(
        instrument_id=frame["instrument_id"].to_numpy().astype(object),
        underlying=frame["underlying"].to_numpy().astype(object),
        underlyings=underlyings,
        underlying_code=underlying_code,
        kind=kind.astype(np.int8),
        inverse=inverse,
        units=units,
        forward=forward,
        index=index,
        strike=strike,
        t=t,
        is_call=is_call,
        sigma=sigma,
        iv_solved=missing_iv,
        mark_price=mark,
        frame=frame.with_columns(
            pl.Series("mark_iv", np.where(option, sigma, np.nan)).fill_nan(None),
            pl.Series("mark_iv_solved", missing_iv),
        ),
    )
