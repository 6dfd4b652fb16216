"""A realistic landing zone for any date and size: ``margin-eod generate``.

The market comes from :mod:`risk_core.landing.generator_market`, the strategies from
:mod:`risk_core.landing.generator_book`; this module assembles the book: accounts of the
kinds real venues have (market makers with many options and a perpetual delta hedge,
covered calls with coin collateral, put sellers, vertical spreads, calendars,
directional futures, perpetuals and options, basis spot against futures, boxes), each
with exactly its number of positions (unique instruments, no zero quantity), and
collateral in coins or stablecoins sized against a rough margin estimate (a heuristic:
15 % of the index per short option contract, 10 % of futures notional) so that about
``NEAR_CALL_SHARE`` of the accounts sit near a margin call.

Built in bulk with NumPy and Polars (1,000,000 positions in a few seconds).
Deterministic: one generator seeded with (seed, business date) draws everything in a
fixed order, so the same arguments write byte-identical files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from numpy.typing import NDArray

from risk_core.landing import schemas
from risk_core.landing.generator_book import (
    ARCHETYPES,
    NAMES,
    Chain,
    Legs,
    build_chain,
    directional,
    directional_quantity,
    strategy_legs,
)
from risk_core.landing.generator_market import build_market, price_history
from risk_core.landing.schemas import COLLATERAL, POSITIONS, Dataset

__all__ = [
    "ARCHETYPES",
    "MAX_POSITIONS_PER_ACCOUNT",
    "NEAR_CALL_SHARE",
    "GeneratedLanding",
    "generate_landing",
]

I64 = NDArray[np.int64]
#: Share of accounts whose collateral is set just around their margin estimate.
NEAR_CALL_SHARE = 0.08
MAX_POSITIONS_PER_ACCOUNT = 1_200
#: Rounds of directional legs (each drawing more) before topping up from unheld instruments.
FILL_ROUNDS = 4


@dataclass(frozen=True)
class GeneratedLanding:
    folder: Path
    files: dict[str, Path]
    rows: dict[str, int]
    #: archetype -> number of accounts
    archetypes: dict[str, int] = field(default_factory=dict)
    #: account_id -> archetype
    account_archetype: dict[str, str] = field(default_factory=dict)


def _counts(accounts: int, positions: int, kinds: I64, cap: int) -> I64:
    """Positions per account: every account at least one while positions last, the rest
    spread by each archetype's weight (market makers hold large books), at most ``cap``
    each (the excess goes to the first accounts with room). Needs positions <= accounts
    * cap."""
    if positions <= accounts:
        return (np.arange(accounts) < positions).astype(np.int64)
    w = np.array([weight for _, _, weight in ARCHETYPES])[kinds]
    extra = positions - accounts
    share = np.floor(extra * w / w.sum()).astype(np.int64)
    share[np.argsort(-w, kind="stable")[: extra - int(share.sum())]] += 1
    counts: I64 = np.minimum(1 + share, cap)
    room = cap - counts
    before = np.cumsum(room) - room
    spill: I64 = np.clip(positions - int(counts.sum()) - before, 0, room)
    return counts + spill


def _fill(candidates: Legs, counts: I64, chain: Chain, rng: np.random.Generator) -> Legs:
    """Exactly ``counts[a]`` legs for account ``a`` (needs counts <= chain.n): its
    candidates in order, then directional legs, then instruments it does not hold yet;
    skipping instruments it already holds and zero quantities."""
    parts = [_keep(candidates, counts, chain.n, np.zeros(0, np.int64))]
    held = np.bincount(parts[0].account, minlength=counts.size)
    for oversample in range(1, FILL_ROUNDS + 1):
        short = counts - held
        if not short.any():
            return Legs.concat(parts)
        kept = Legs.concat(parts)
        draws = directional(np.repeat(np.arange(counts.size), short * oversample), chain, rng)
        parts.append(_keep(draws, short, chain.n, np.sort(_keys(kept, chain.n))))
        held += np.bincount(parts[-1].account, minlength=counts.size)
    if (counts > held).any():
        parts.append(_unheld(Legs.concat(parts), counts - held, chain, rng))
    return Legs.concat(parts)


def _keys(legs: Legs, n_instruments: int) -> I64:
    return legs.account * n_instruments + legs.instrument


def _keep(legs: Legs, room: I64, n_instruments: int, held_keys: I64) -> Legs:
    """In the given order, at most ``room[a]`` legs of account ``a``: none whose
    instrument it holds (``held_keys``, sorted) or got earlier in ``legs``, none zero."""
    keys = _keys(legs, n_instruments)
    ok = (legs.instrument >= 0) & (legs.quantity != 0.0)
    if held_keys.size:
        at = np.minimum(np.searchsorted(held_keys, keys), held_keys.size - 1)
        ok &= held_keys[at] != keys
    rows = np.flatnonzero(ok)
    _, first = np.unique(keys[rows], return_index=True)  # first occurrence of each key
    rows = np.sort(rows[first])
    rows = rows[np.argsort(legs.account[rows], kind="stable")]
    acc = legs.account[rows]
    starts = np.flatnonzero(np.r_[True, acc[1:] != acc[:-1]])
    rank = np.arange(acc.size) - np.repeat(starts, np.diff(np.r_[starts, acc.size]))
    return legs.take(rows[rank < room[acc]])


def _unheld(kept: Legs, short: I64, chain: Chain, rng: np.random.Generator) -> Legs:
    """``short[a]`` instruments that account ``a`` does not hold, uniformly at random."""
    accounts = np.flatnonzero(short)
    row = np.full(short.size, -1)
    parts = []
    for start in range(0, accounts.size, 1_024):  # bounds the memory of the random keys
        chunk = accounts[start : start + 1_024]
        row[chunk] = np.arange(chunk.size)
        mine = row[kept.account] >= 0
        keys = rng.random((chunk.size, chain.n))
        keys[row[kept.account[mine]], kept.instrument[mine]] = 2.0  # held: sorted last
        order = np.argsort(keys, axis=1)
        inst = order[np.arange(chain.n) < short[chunk, None]]
        parts.append(
            Legs(np.repeat(chunk, short[chunk]), inst, directional_quantity(inst, chain, rng))
        )
        row[chunk] = -1
    return Legs.concat(parts)


def _collateral(
    legs: Legs,
    kinds: I64,
    underlying: I64,
    chain: Chain,
    ids: pl.Series,
    rng: np.random.Generator,
) -> pl.DataFrame:
    """One collateral row per account, worth its rough margin times a factor (0.9-1.3
    for ``NEAR_CALL_SHARE`` of accounts, else lognormal around 2.7), at least 1,000 USD:
    coins (BTC or ETH; always for covered calls and basis) or stablecoins (USDC 70 %,
    USDT). Covered-call accounts also hold the coins of their short calls."""
    accounts = kinds.size
    need = np.bincount(legs.account, weights=_rough_margin_usd(legs, chain), minlength=accounts)
    near = rng.random(accounts) < NEAR_CALL_SHARE
    factor = np.where(near, rng.uniform(0.9, 1.3, accounts), rng.lognormal(1.0, 0.4, accounts))
    equity = np.maximum(need * factor, 1_000.0)
    n_coins = chain.coins.size
    coin_kind = np.isin(kinds, [NAMES.index("covered_call"), NAMES.index("basis")])
    coin = (coin_kind | (rng.random(accounts) < 0.3)) & (n_coins > 0)
    coin_u = chain.coins[rng.integers(n_coins, size=accounts)] if n_coins else 0 * kinds
    stable = np.where(rng.random(accounts) < 0.7, "USDC", "USDT")
    names = np.array(chain.names)
    asset = np.where(coin, names[coin_u], stable)
    amount = np.where(coin, np.round(equity / chain.index[coin_u], 8), np.round(equity, 2))
    q = legs.quantity
    covered_call = chain.is_call[legs.instrument] & (q < 0)
    covered_call &= chain.underlying[legs.instrument] == underlying[legs.account]
    covered = np.bincount(legs.account, weights=np.where(covered_call, -q, 0.0), minlength=accounts)
    extra = (kinds == NAMES.index("covered_call")) & (covered > 0) & (asset != names[underlying])
    return (
        pl.DataFrame(
            {
                "account_id": pl.concat([ids, ids.filter(extra)]),
                "asset": np.concatenate([asset, names[underlying[extra]]]),
                "amount": np.concatenate([amount, np.round(covered[extra], 8)]),
            },
            schema=COLLATERAL.schema,
        )
        .group_by("account_id", "asset")
        .agg(pl.col("amount").sum())
        .sort("account_id", "asset")
    )


def _rough_margin_usd(legs: Legs, chain: Chain) -> NDArray[np.float64]:
    """Per leg, USD: 15 % of the index per short option contract, 10 % of the notional
    of futures and perpetuals (a heuristic, not a margin model); spot and long options 0."""
    inst, q = legs.instrument, np.abs(legs.quantity)
    index = chain.index[chain.underlying[inst]]
    short_option = chain.is_option[inst] & (legs.quantity < 0)
    notional = np.where(chain.inverse_usd[inst], q * chain.size[inst], q * chain.size[inst] * index)
    delta_one = ~chain.is_option[inst] & ~chain.is_spot[inst]
    return np.where(short_option, 0.15 * index * q, np.where(delta_one, 0.10 * notional, 0.0))


def _account_ids(accounts: int) -> pl.Series:
    """ACC000001, ACC000002, ... (six digits, more beyond 999,999 accounts)."""
    return pl.Series("account_id", [f"ACC{a + 1:06d}" for a in range(accounts)])


def _write(frame: pl.DataFrame, dataset: Dataset, folder: Path, file_format: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dataset.name}.{file_format}"
    frame = frame.select(list(dataset.columns))
    if file_format == "csv":
        frame.write_csv(path, datetime_format="%Y-%m-%dT%H:%M:%SZ", date_format="%Y-%m-%d")
    else:
        frame.write_parquet(path, statistics=False, compression="zstd")
    return path


def _refuse_unfillable(accounts: int, positions: int, cap: int, why: str = "") -> None:
    """ValueError unless ``positions`` fit in ``accounts`` of at most ``cap`` each."""
    if accounts < 1 or positions < 1:
        raise ValueError("accounts and positions must be at least 1")
    if positions > accounts * cap:
        raise ValueError(
            f"{positions:,} positions need at least {-(-positions // cap):,} accounts "
            f"(at most {cap:,} positions per account{why})"
        )


def generate_landing(
    out_dir: Path,
    business_date: dt.date,
    *,
    accounts: int = 200,
    positions: int = 2_000,
    seed: int = 0,
    history_files: Sequence[Path] = (),
    file_format: Literal["csv", "parquet"] = "csv",
    strikes_scale: float = 1.0,
) -> GeneratedLanding:
    """Write ``<out_dir>/<date>/`` and ``<out_dir>/reference/price_history`` (see module):
    ``accounts`` accounts ACC000001... holding exactly ``positions`` positions in all.

    ``strikes_scale`` multiplies the strikes listed per expiry (1.6: about 3,000
    instruments instead of about 1,900). Refuses (ValueError) sizes it cannot fill: more
    than ``MAX_POSITIONS_PER_ACCOUNT`` positions per account, or than the market lists
    instruments."""
    out_dir = Path(out_dir)
    _refuse_unfillable(accounts, positions, MAX_POSITIONS_PER_ACCOUNT)
    rng = np.random.default_rng([seed, business_date.toordinal()])
    history = price_history(seed, business_date, tuple(Path(p) for p in history_files))
    market = build_market(business_date, history, rng, strikes_scale=strikes_scale)
    chain = build_chain(market)
    cap = min(MAX_POSITIONS_PER_ACCOUNT, chain.n)
    _refuse_unfillable(accounts, positions, cap, f": the market lists {chain.n:,} instruments")

    shares = np.array([share for _, share, _ in ARCHETYPES])
    kinds = rng.choice(len(ARCHETYPES), size=accounts, p=shares / shares.sum()).astype(np.int64)
    counts = _counts(accounts, positions, kinds, cap)
    candidates, underlying = strategy_legs(kinds, counts, chain, rng)
    legs = _fill(candidates, counts, chain, rng)
    ids = _account_ids(accounts)
    positions_frame = pl.DataFrame(
        {
            "account_id": ids.gather(legs.account),
            "instrument_id": chain.ids.gather(legs.instrument),
            "quantity": legs.quantity,
        },
        schema=POSITIONS.schema,
    ).sort("account_id", "instrument_id")
    collateral = _collateral(legs, kinds, underlying, chain, ids, rng)
    folder = out_dir / business_date.isoformat()
    files = {
        "instruments": _write(market.instruments, schemas.INSTRUMENTS, folder, file_format),
        "marks": _write(market.marks, schemas.MARKS, folder, file_format),
        "index_prices": _write(market.index_prices, schemas.INDEX_PRICES, folder, file_format),
        "positions": _write(positions_frame, schemas.POSITIONS, folder, file_format),
        "collateral": _write(collateral, schemas.COLLATERAL, folder, file_format),
        "price_history": _write(history, schemas.PRICE_HISTORY, out_dir / "reference", file_format),
    }
    for ext in ("csv", "parquet"):  # never leave a stale file of the other format behind
        if ext != file_format:
            for path in [*folder.glob(f"*.{ext}"), *(out_dir / "reference").glob(f"*.{ext}")]:
                path.unlink()
    rows = {
        "instruments": market.instruments.height,
        "marks": market.marks.height,
        "index_prices": market.index_prices.height,
        "positions": positions_frame.height,
        "collateral": collateral.height,
        "price_history": history.height,
    }
    per_kind = np.bincount(kinds, minlength=len(NAMES))
    archetypes = {name: int(k) for name, k in zip(NAMES, per_kind, strict=True) if k}
    account_kind = dict(zip(ids.to_list(), (NAMES[k] for k in kinds), strict=True))
    return GeneratedLanding(folder, files, rows, archetypes, account_kind)
