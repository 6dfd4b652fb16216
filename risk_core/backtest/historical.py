"""Historical backtest of every model of a ruleset on real daily prices.

Each business date D a documented set of test portfolios is struck from D's prices only
(per underlying, BTC and ETH, Deribit-style inverse contracts of 1 coin):

==================  ==========================================================
``long_call_7d``    +1 ATM call, 7 days
``short_call_7d``   -1 ATM call, 7 days
``short_put_30d``   -1 ATM put, 30 days
``short_straddle``  -1 ATM call and -1 ATM put, 7 days
``short_strangle``  -1 25-delta call and -1 25-delta put, 30 days
``covered_call``    +1 spot, -1 25-delta call, 30 days
``calendar``        -1 ATM call 7 days, +1 ATM call 30 days
``long_perp``       +1 coin of the inverse perpetual
``short_perp``      -1 coin of the inverse perpetual
``basis``           +1 spot, -1 coin of the 30-day future
==================  ==========================================================

plus ``btc_eth_cross``: long 1 BTC perpetual against short ETH perpetuals of the same
USD value. Options are valued on a volatility that follows the market: Deribit's DVOL
where the file covers the date (BTC), else the EWMA (0.94) realized volatility of the
daily returns, floored at 20 %; flat across strikes. Forwards equal spot. Margins come
from the production code path (:func:`risk_core.eod.margin_inputs`, ``run_models``,
``margin_tables``) on prices up to D; the P&L holds each book from D to D + h and
revalues it with D + h's prices and volatility (options expiring in between settle at
intrinsic).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from scipy.special import ndtri

from risk_core import eod
from risk_core.backtest.daily import daily_backtest
from risk_core.landing.reader import LandingData
from risk_core.landing.schemas import (
    COLLATERAL,
    INDEX_PRICES,
    INSTRUMENTS,
    MARKS,
    POSITIONS,
    PRICE_HISTORY,
)
from risk_core.pricing import black76
from risk_core.ruleset import Ruleset

EXPIRY_HOUR = 8
VOL_FLOOR = 0.20
EWMA_DECAY = 0.94


def read_price_file(path: Path) -> pl.DataFrame:
    """date, underlying, close from a real daily price file (``<U>-USD.csv``)."""
    raw = pl.read_csv(path, infer_schema=False)
    return pl.DataFrame(
        {
            "date": raw["date"].str.to_date("%Y-%m-%d"),
            "underlying": path.name.split("-")[0].upper(),
            "close": raw["value"].cast(pl.Float64),
        }
    )


def market_vols(
    history: pl.DataFrame, dvol: pl.DataFrame | None
) -> dict[tuple[str, dt.date], float]:
    """Volatility per underlying and date from data up to that date only."""
    out: dict[tuple[str, dt.date], float] = {}
    for (name,), frame in history.sort("date").group_by("underlying", maintain_order=True):
        dates = frame["date"].to_list()
        closes = frame["close"].to_numpy()
        var = 0.6**2 / 365.0
        for i, date in enumerate(dates):
            if i:
                r = math.log(closes[i] / closes[i - 1])
                var = EWMA_DECAY * var + (1 - EWMA_DECAY) * r * r
            out[(str(name), date)] = max(math.sqrt(var * 365.0), VOL_FLOOR)
    if dvol is not None:
        for date, value in dvol.iter_rows():
            if ("BTC", date) in out:
                out[("BTC", date)] = max(value / 100.0, VOL_FLOOR)
    return out


@dataclass(frozen=True)
class Market:
    date: dt.date
    spot: dict[str, float]
    vol: dict[str, float]


def _expiry(date: dt.date, days: int) -> dt.datetime:
    return dt.datetime.combine(date + dt.timedelta(days=days), dt.time(EXPIRY_HOUR), tzinfo=dt.UTC)


def _strike(spot: float, vol: float, days: int, delta: float, call: bool) -> float:
    """Strike of a given Black-76 delta (0.5: ATM forward), rounded to 1/1000 of spot."""
    t = (days - 0.0) / 365.0
    s = vol * math.sqrt(t)
    d1 = float(ndtri(delta if call else 1.0 - delta))
    k = spot * math.exp(-d1 * s + 0.5 * s * s)
    step = 10 ** math.floor(math.log10(spot) - 3)
    return float(round(k / step) * step)


def book(market: Market) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(instruments, positions) of the test portfolios struck on ``market``."""
    inst: dict[str, tuple[object, ...]] = {}
    pos: list[tuple[str, str, float]] = []
    for u, s in market.spot.items():
        vol = market.vol[u]

        def option(
            days: int, delta: float, call: bool, u: str = u, s: float = s, vol: float = vol
        ) -> str:
            k = _strike(s, vol, days, delta, call)
            expiry = _expiry(market.date, days)
            name = f"{u}-{expiry:%d%b%y}".upper() + f"-{k:g}-{'C' if call else 'P'}"
            inst[name] = (
                name,
                "deribit",
                "option",
                u,
                "inverse",
                1.0,
                "base",
                expiry,
                k,
                "C" if call else "P",
            )
            return name

        perp = f"{u}-PERPETUAL"
        size = 10.0 if u == "BTC" else 1.0
        inst[perp] = (perp, "deribit", "perpetual", u, "inverse", size, "usd", None, None, None)
        fut_exp = _expiry(market.date, 30)
        fut = f"{u}-{fut_exp:%d%b%y}".upper()
        inst[fut] = (fut, "deribit", "future", u, "inverse", size, "usd", fut_exp, None, None)
        inst[u] = (u, "deribit", "spot", u, "linear", 1.0, "base", None, None, None)
        coin = s / size  # contracts of one coin
        atm7c, atm7p = option(7, 0.5, True), option(7, 0.5, False)
        books = {
            "long_call_7d": [(atm7c, 1.0)],
            "short_call_7d": [(atm7c, -1.0)],
            "short_put_30d": [(option(30, 0.5, False), -1.0)],
            "short_straddle": [(atm7c, -1.0), (atm7p, -1.0)],
            "short_strangle": [(option(30, 0.25, True), -1.0), (option(30, 0.25, False), -1.0)],
            "covered_call": [(u, 1.0), (option(30, 0.25, True), -1.0)],
            "calendar": [(atm7c, -1.0), (option(30, 0.5, True), 1.0)],
            "long_perp": [(perp, coin)],
            "short_perp": [(perp, -coin)],
            "basis": [(u, 1.0), (fut, -coin)],
        }
        for name, legs in books.items():
            pos += [(f"{u}:{name}", i, q) for i, q in legs]
    if {"BTC", "ETH"} <= set(market.spot):
        pos += [
            ("BTC_ETH:cross", "BTC-PERPETUAL", market.spot["BTC"] / 10.0),
            ("BTC_ETH:cross", "ETH-PERPETUAL", -market.spot["BTC"] / 1.0),
        ]
    instruments = pl.DataFrame(list(inst.values()), schema=INSTRUMENTS.schema, orient="row")
    positions = pl.DataFrame(pos, schema=POSITIONS.schema, orient="row")
    return instruments.sort("instrument_id"), positions.sort("account_id", "instrument_id")


def marks(instruments: pl.DataFrame, market: Market) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(marks, instruments still alive) valued on ``market``: Black-76 on spot, flat vol."""
    now = dt.datetime.combine(market.date, dt.time(0), tzinfo=dt.UTC)
    alive = instruments.filter(pl.col("expiry").is_null() | (pl.col("expiry") > now))
    rows: list[tuple[str, float, float | None, float]] = []
    for iid, kind, u, expiry, strike, typ in alive.select(
        "instrument_id", "kind", "underlying", "expiry", "strike", "option_type"
    ).iter_rows():
        s = market.spot[u]
        if kind == "option":
            t = (expiry - now).total_seconds() / (365 * 86400)
            usd = float(black76.price(s, strike, t, market.vol[u], typ == "C"))
            rows.append((iid, usd / s, market.vol[u], s))
        else:
            rows.append((iid, s, None, s))
    return pl.DataFrame(rows, schema=MARKS.schema, orient="row"), alive


def run_backtest(
    history: pl.DataFrame,
    ruleset: Ruleset,
    start: dt.date,
    end: dt.date,
    horizon_days: int = 1,
    dvol: pl.DataFrame | None = None,
    progress: Callable[[dt.date], None] | None = None,
) -> pl.DataFrame:
    """backtest_result rows (with business_date = D, the date of the margin) for every
    date D in [start, end] whose D + h price exists."""
    history = history.sort("underlying", "date")
    closes = {(u, d): c for d, u, c in history.iter_rows()}
    vols = market_vols(history, dvol)
    underlyings = sorted(set(history["underlying"]))
    frames = []
    date = start
    while date <= end:
        later = date + dt.timedelta(days=horizon_days)
        if all((u, date) in closes and (u, later) in closes for u in underlyings):
            frames.append(
                _one_date(history, ruleset, date, later, closes, vols, underlyings, horizon_days)
            )
        if progress:
            progress(date)
        date += dt.timedelta(days=1)
    return pl.concat(frames) if frames else pl.DataFrame()


def _one_date(
    history: pl.DataFrame,
    ruleset: Ruleset,
    date: dt.date,
    later: dt.date,
    closes: dict[tuple[str, dt.date], float],
    vols: dict[tuple[str, dt.date], float],
    underlyings: list[str],
    horizon: int,
) -> pl.DataFrame:
    m0 = Market(
        date, {u: closes[(u, date)] for u in underlyings}, {u: vols[(u, date)] for u in underlyings}
    )
    m1 = Market(
        later,
        {u: closes[(u, later)] for u in underlyings},
        {u: vols[(u, later)] for u in underlyings},
    )
    instruments, positions = book(m0)
    marks0, _ = marks(instruments, m0)
    index0 = pl.DataFrame(
        [*list(m0.spot.items()), ("USDC", 1.0)], schema=INDEX_PRICES.schema, orient="row"
    )
    collateral = pl.DataFrame(
        {"account_id": sorted(set(positions["account_id"])), "asset": "USDC", "amount": 1e7},
        schema=COLLATERAL.schema,
    )
    data = LandingData(
        date,
        instruments,
        marks0,
        index0,
        positions,
        collateral,
        history.filter(pl.col("date") <= date).cast(PRICE_HISTORY.columns),  # type: ignore[arg-type]
    )
    table0 = eod.instrument_table(data)
    inputs = eod.margin_inputs(data, table0)
    tables = eod.margin_tables(eod.run_models(inputs, ruleset), ruleset)
    marks1, alive1 = marks(instruments, m1)
    index1 = pl.DataFrame(list(m1.spot.items()), schema=INDEX_PRICES.schema, orient="row")
    from risk_core.market import build_instrument_table

    table1 = build_instrument_table(alive1, marks1, index1, later)
    result = daily_backtest(positions, tables.margin_account, table0, table1, horizon)
    return result.with_columns(pl.lit(date).alias("business_date"))


def read_dvol(path: Path) -> pl.DataFrame:
    raw = pl.read_csv(path, infer_schema=False)
    return pl.DataFrame(
        {"date": raw["date"].str.to_date("%Y-%m-%d"), "dvol": raw["dvol"].cast(pl.Float64)}
    )


def load_history(files: Sequence[Path]) -> pl.DataFrame:
    return pl.concat([read_price_file(p) for p in files]).cast(PRICE_HISTORY.columns)  # type: ignore[arg-type]
