"""The generated market: price history, index prices, futures curves and option chains.

The simulated history depends only on the seed (never on the business date): the
history written for D + 1 extends the one for D exactly. Real daily price files, when
given, replace an underlying's simulated history (rows dated up to D only).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from risk_core.landing.schemas import INDEX_PRICES, INSTRUMENTS, MARKS, PRICE_HISTORY
from risk_core.pricing import black76

HISTORY_START = dt.date(2016, 1, 1)
HISTORY_END = dt.date(2040, 12, 31)  # the simulated path is drawn once to here, then cut
ANCHOR_DATE = dt.date(2026, 1, 1)
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True)
class UnderlyingSpec:
    name: str
    start: dt.date
    anchor_price: float  #: the simulated close on ANCHOR_DATE (a realistic level)
    annual_vol: float
    inverse: bool  #: Deribit-style coin-settled contracts (else linear USDC)
    future_size_usd: float  #: inverse futures' contract size in USD
    strike_step: float
    strikes_per_expiry: int
    skew: float  #: d(iv)/d(log-moneyness)
    smile: float  #: d2(iv)/d(log-moneyness)2 / 2


UNDERLYINGS = (
    UnderlyingSpec("BTC", HISTORY_START, 90_000.0, 0.65, True, 10.0, 500.0, 31, -0.10, 0.45),
    UnderlyingSpec("ETH", dt.date(2017, 11, 9), 3_000.0, 0.80, True, 1.0, 25.0, 29, -0.08, 0.40),
    UnderlyingSpec("SOL", dt.date(2020, 4, 10), 150.0, 1.00, False, 0.0, 1.0, 25, -0.05, 0.35),
)
STABLECOINS = {"USDC": 1.0001, "USDT": 0.9998}
TREND_PER_YEAR = 0.35  #: log-drift of the simulated paths (crypto's long uptrend)
BASIS_PER_YEAR = 0.06  #: annualized futures basis over the index
#: Highest implied vol of the smile: the landing contract's largest valid ``mark_iv``.
MAX_IV = 5.0


def simulate_history(seed: int) -> pl.DataFrame:
    """Daily closes from each underlying's start to HISTORY_END: GARCH(1,1) variance,
    Student-t shocks and a few crash days; a path fixed by the seed alone."""
    frames = []
    for i, spec in enumerate(UNDERLYINGS):
        rng = np.random.default_rng([seed, 1000 + i])
        n = (HISTORY_END - spec.start).days + 1
        shocks = rng.standard_t(4, n) / math.sqrt(2.0)  # unit variance
        daily = spec.annual_vol / math.sqrt(365.0)
        omega, alpha, beta = daily**2 * 0.04, 0.10, 0.86
        var = np.empty(n)
        ret = np.empty(n)
        v = daily**2
        for t in range(n):
            var[t] = v
            ret[t] = math.sqrt(v) * shocks[t]
            v = omega + alpha * ret[t] ** 2 + beta * v
        crashes = rng.random(n) < 1.0 / 500.0
        ret = np.where(crashes, -np.abs(rng.normal(0.15, 0.05, n)), ret)
        ret = np.clip(ret, -0.6, 0.6) + TREND_PER_YEAR / 365.0
        log_path = np.cumsum(ret) - ret[0]
        anchor = (ANCHOR_DATE - spec.start).days
        close = spec.anchor_price * np.exp(log_path - log_path[anchor])
        dates = pl.date_range(spec.start, HISTORY_END, "1d", eager=True)
        frames.append(pl.DataFrame({"date": dates, "underlying": spec.name, "close": close}))
    return pl.concat(frames).select(PRICE_HISTORY.schema.names()).cast(PRICE_HISTORY.columns)  # type: ignore[arg-type]


def read_history_file(path: Path) -> pl.DataFrame:
    """A real daily price file (``date,value`` or ``None,code,date,value``)."""
    underlying = path.name.split("-")[0].upper()
    raw = pl.read_csv(path, infer_schema=False)
    return pl.DataFrame(
        {
            "date": raw["date"].str.to_date("%Y-%m-%d"),
            "underlying": underlying,
            "close": raw["value"].cast(pl.Float64),
        }
    ).filter(pl.col("close") > 0)


def price_history(
    seed: int, business_date: dt.date, history_files: tuple[Path, ...]
) -> pl.DataFrame:
    history = simulate_history(seed)
    for path in history_files:
        real = read_history_file(path)
        name = real["underlying"][0]
        history = pl.concat([history.filter(pl.col("underlying") != name), real])
    return history.filter(pl.col("date") <= business_date).sort("underlying", "date")


def expiries(business_date: dt.date) -> list[dt.datetime]:
    """Deribit-style expiries at 08:00 UTC: 2 dailies, 3 weeklies (Fridays), 3 monthlies
    and 4 quarterlies (last Fridays), all strictly after the snapshot."""
    days: set[dt.date] = {
        business_date + dt.timedelta(days=1),
        business_date + dt.timedelta(days=2),
    }
    friday = business_date + dt.timedelta(days=(4 - business_date.weekday()) % 7 or 7)
    days.update(friday + dt.timedelta(weeks=w) for w in range(3))

    def last_friday(year: int, month: int) -> dt.date:
        nxt = dt.date(year + month // 12, month % 12 + 1, 1)
        d = nxt - dt.timedelta(days=1)
        return d - dt.timedelta(days=(d.weekday() - 4) % 7)

    y, m = business_date.year, business_date.month
    found = 0
    while found < 3:
        lf = last_friday(y, m)
        if lf > business_date + dt.timedelta(days=7):
            days.add(lf)
            found += 1
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    quarters = 0
    y, m = business_date.year, business_date.month
    while quarters < 4:
        if m % 3 == 0 and last_friday(y, m) > business_date + dt.timedelta(days=7):
            days.add(last_friday(y, m))
            quarters += 1
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return [dt.datetime.combine(d, dt.time(8), tzinfo=dt.UTC) for d in sorted(days)]


def expiry_code(expiry: dt.datetime) -> str:
    return f"{expiry.day}{MONTHS[expiry.month - 1]}{expiry.year % 100:02d}"


def realized_vol(history: pl.DataFrame, name: str, fallback: float) -> float:
    closes = history.filter(pl.col("underlying") == name)["close"].tail(31).to_numpy()
    if len(closes) < 10:
        return fallback
    vol = float(np.std(np.diff(np.log(closes)), ddof=1) * math.sqrt(365.0))
    return min(max(vol, 0.25), 1.5)


@dataclass(frozen=True)
class Market:
    instruments: pl.DataFrame
    marks: pl.DataFrame
    index_prices: pl.DataFrame
    #: per option row of ``instruments`` (same order as options in it): unit delta
    option_delta: dict[str, float]


def build_market(
    business_date: dt.date,
    history: pl.DataFrame,
    rng: np.random.Generator,
    *,
    strikes_scale: float = 1.0,
) -> Market:
    """Instruments, marks and index prices at 00:00 UTC of ``business_date``.

    ``strikes_scale`` multiplies each underlying's ``strikes_per_expiry`` (1.0: about
    1,900 instruments over BTC, ETH, SOL; 1.6: about 3,000); strikes that round to the
    same listed strike count once. The only draws from ``rng`` pick the option marks
    published without an implied vol (3 %), one draw per listed option."""
    if not (math.isfinite(strikes_scale) and strikes_scale > 0):
        raise ValueError(f"strikes_scale must be a positive number, not {strikes_scale!r}")
    now = dt.datetime.combine(business_date, dt.time(0), tzinfo=dt.UTC)
    exps = expiries(business_date)
    inst_rows: list[tuple[object, ...]] = []
    mark_rows: list[tuple[object, ...]] = []
    deltas: dict[str, float] = {}
    index_rows = [(k, v) for k, v in STABLECOINS.items()]
    for spec in UNDERLYINGS:
        closes = history.filter(pl.col("underlying") == spec.name)
        if closes.is_empty():
            continue
        spot = float(closes["close"][-1])
        index_rows.append((spec.name, spot))
        atm = realized_vol(history, spec.name, spec.annual_vol)
        prefix = spec.name if spec.inverse else f"{spec.name}_USDC"
        settlement = "inverse" if spec.inverse else "linear"
        inst_rows.append(
            (spec.name, "deribit", "spot", spec.name, "linear", 1.0, "base", None, None, None)
        )
        mark_rows.append((spec.name, spot, None, spot))
        perp = spot * (1.0 + 0.0005)
        if spec.inverse:
            perp_id = f"{spec.name}-PERPETUAL"
            inst_rows.append(
                (
                    perp_id,
                    "deribit",
                    "perpetual",
                    spec.name,
                    "inverse",
                    spec.future_size_usd,
                    "usd",
                    None,
                    None,
                    None,
                )
            )
            mark_rows.append((perp_id, perp, None, spot))
        lin_id = f"{spec.name}_USDC-PERPETUAL"
        inst_rows.append(
            (
                lin_id,
                "deribit",
                "perpetual",
                spec.name,
                "linear",
                1.0,
                "base",
                None,
                None,
                None,
            )
        )
        mark_rows.append((lin_id, perp, None, spot))
        for expiry in exps:
            t = (expiry - now).total_seconds() / (365.0 * 86400.0)
            fwd = spot * math.exp(BASIS_PER_YEAR * t)
            code = expiry_code(expiry)
            if spec.inverse and (expiry - now).days >= 5:
                fut_id = f"{spec.name}-{code}"
                inst_rows.append(
                    (
                        fut_id,
                        "deribit",
                        "future",
                        spec.name,
                        "inverse",
                        spec.future_size_usd,
                        "usd",
                        expiry,
                        None,
                        None,
                    )
                )
                mark_rows.append((fut_id, fwd, None, fwd))
            atm_t = min(
                max(atm * (1.0 + 0.15 * (math.sqrt(30.0 / 365.0 / t) - 1.0) * 0.3), 0.2), 3.0
            )
            width = 2.8 * atm_t * math.sqrt(t) + 0.04
            step = spec.strike_step * max(1.0, round(math.sqrt(t * 12.0)))
            center = round(fwd / step) * step
            half = round(spec.strikes_per_expiry * strikes_scale) // 2
            strikes = sorted(
                {
                    round(center * math.exp(x) / step) * step
                    for x in np.linspace(-width, width, 2 * half + 1)
                }
                - {0.0}
            )
            for strike in strikes:
                x = math.log(strike / fwd)
                smile = atm_t + spec.skew * x / math.sqrt(max(t, 1e-3)) * 0.1 + spec.smile * x * x
                iv = min(max(smile, 0.1), MAX_IV)  # the far wings of long expiries exceed it
                for opt in ("C", "P"):
                    g = black76.greeks(fwd, strike, t, iv, opt == "C")
                    usd = float(g.price)
                    if usd < 1e-6 * fwd:
                        continue  # too far out of the money to trade or imply a vol from
                    sid = f"{strike:.0f}" if strike >= 1 else f"{strike:g}".replace(".", "d")
                    oid = f"{prefix}-{code}-{sid}-{opt}"
                    inst_rows.append(
                        (
                            oid,
                            "deribit",
                            "option",
                            spec.name,
                            settlement,
                            1.0,
                            "base",
                            expiry,
                            float(strike),
                            opt,
                        )
                    )
                    mark = usd / fwd if spec.inverse else usd
                    mark_iv = None if rng.random() < 0.03 else iv
                    mark_rows.append((oid, mark, mark_iv, fwd))
                    deltas[oid] = float(g.delta)
    instruments = pl.DataFrame(inst_rows, schema=INSTRUMENTS.schema, orient="row").sort(
        "instrument_id"
    )
    marks = pl.DataFrame(mark_rows, schema=MARKS.schema, orient="row").sort("instrument_id")
    index = pl.DataFrame(index_rows, schema=INDEX_PRICES.schema, orient="row").sort("underlying")
    return Market(instruments, marks, index, deltas)
