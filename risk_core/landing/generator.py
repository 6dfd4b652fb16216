"""A realistic landing zone for any date and size: ``margin-eod generate``.

The market comes from :mod:`risk_core.landing.generator_market`; this module builds the
book: accounts of the kinds real venues have, each with positions of its strategy and
collateral sized against a rough margin estimate (a heuristic: 15 % of the index per
short option contract, 10 % of futures notional) so that some accounts sit near a
margin call. Deterministic for a seed: same arguments, byte-identical files.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from numpy.typing import NDArray

from risk_core.landing import schemas
from risk_core.landing.generator_market import Market, build_market, price_history
from risk_core.landing.schemas import COLLATERAL, POSITIONS, Dataset

ARCHETYPES = (
    ("market_maker", 0.08, 12.0),  # name, share of accounts, relative number of positions
    ("covered_call", 0.12, 1.0),
    ("put_seller", 0.12, 1.0),
    ("vertical_spread", 0.10, 1.0),
    ("calendar_spread", 0.08, 1.0),
    ("directional", 0.35, 1.0),
    ("basis", 0.10, 1.0),
    ("box", 0.05, 1.0),
)
#: Share of accounts whose collateral is set just around their margin estimate.
NEAR_CALL_SHARE = 0.08
MAX_POSITIONS_PER_ACCOUNT = 1_200


@dataclass(frozen=True)
class GeneratedLanding:
    folder: Path
    files: dict[str, Path]
    rows: dict[str, int]
    archetypes: dict[str, int] = field(default_factory=dict)
    #: account_id -> archetype
    account_archetype: dict[str, str] = field(default_factory=dict)


class _Chain:
    """Instrument lookups of the generated market, by underlying."""

    def __init__(self, market: Market) -> None:
        inst = market.instruments.join(market.index_prices, on="underlying", how="left")
        self.index = dict(
            zip(market.index_prices["underlying"], market.index_prices["index_price"], strict=True)
        )
        self.options: dict[str, pl.DataFrame] = {}
        self.futures: dict[str, list[str]] = {}
        self.perps: dict[str, list[str]] = {}
        self.spot: dict[str, str] = {}
        self.size: dict[str, float] = dict(
            zip(inst["instrument_id"], inst["contract_size"], strict=True)
        )
        self.inverse_usd = set(inst.filter(pl.col("contract_unit") == "usd")["instrument_id"])
        for u in sorted(set(inst["underlying"])):
            sub = inst.filter(pl.col("underlying") == u)
            opts = sub.filter(pl.col("kind") == "option").with_columns(
                pl.col("instrument_id")
                .replace_strict(market.option_delta, default=0.0)
                .alias("delta")
            )
            self.options[u] = opts.sort("expiry", "strike", "option_type")
            self.futures[u] = (
                sub.filter(pl.col("kind") == "future").sort("expiry")["instrument_id"].to_list()
            )
            self.perps[u] = sub.filter(pl.col("kind") == "perpetual")["instrument_id"].to_list()
            self.spot[u] = sub.filter(pl.col("kind") == "spot")["instrument_id"][0]
        self.underlyings = [u for u in ("BTC", "ETH", "SOL") if u in self.options]
        self.coins = [u for u in ("BTC", "ETH") if u in self.options]

    def contracts_for_coins(self, instrument: str, coins: float) -> float:
        """Contracts of ``instrument`` worth ``coins`` of underlying (rounded, >= 1)."""
        if instrument in self.inverse_usd:
            u = instrument.split("-")[0]
            return float(max(1.0, round(coins * self.index[u] / self.size[instrument])))
        return float(max(0.1, round(coins / self.size[instrument], 1)))


def _pick_option(
    rng: np.random.Generator, opts: pl.DataFrame, option_type: str, delta_range: tuple[float, float]
) -> str:
    lo, hi = delta_range
    sub = opts.filter(
        (pl.col("option_type") == option_type)
        & (pl.col("delta").abs() >= lo)
        & (pl.col("delta").abs() <= hi)
    )
    if sub.is_empty():
        sub = opts.filter(pl.col("option_type") == option_type)
    return str(sub["instrument_id"][int(rng.integers(sub.height))])


def _legs(kind: str, rng: np.random.Generator, chain: _Chain, n: int) -> list[tuple[str, float]]:
    """Up to ``n`` legs (instrument, signed contracts) of the archetype's strategy."""
    u = str(rng.choice(chain.coins if kind in ("covered_call", "basis") else chain.underlyings))
    opts = chain.options[u]
    unit = {"BTC": 1.0, "ETH": 10.0, "SOL": 100.0}[u]
    size = float(np.round(unit * rng.lognormal(0.0, 0.8), 1)) or 0.1
    legs: list[tuple[str, float]] = []
    expiries = opts["expiry"].unique().sort().to_list()
    if kind == "market_maker":
        ids = opts["instrument_id"].to_list()
        choice = rng.choice(len(ids), size=min(max(n - 1, 1), len(ids)), replace=False)
        for i in sorted(choice):
            legs.append(
                (
                    ids[i],
                    float(np.round(rng.choice([-1, 1]) * size * rng.uniform(0.5, 5), 1)) or 0.1,
                )
            )
        delta = sum(
            float(opts["delta"][int(i)]) * q for i, (_, q) in zip(sorted(choice), legs, strict=True)
        )
        perp = chain.perps[u][0]
        hedge = -chain.contracts_for_coins(perp, abs(delta)) * np.sign(delta)
        legs.append((perp, float(hedge) if hedge else 1.0))
    elif kind in ("covered_call", "put_seller"):
        typ, band = ("C", (0.15, 0.4)) if kind == "covered_call" else ("P", (0.1, 0.35))
        for e in rng.permutation(len(expiries))[:n]:
            legs.append(
                (_pick_option(rng, opts.filter(pl.col("expiry") == expiries[e]), typ, band), -size)
            )
    elif kind == "vertical_spread":
        for e in rng.permutation(len(expiries))[: max(1, n // 2)]:
            sub = opts.filter((pl.col("expiry") == expiries[e]) & (pl.col("option_type") == "C"))
            i = int(rng.integers(max(sub.height - 2, 1)))
            legs += [
                (sub["instrument_id"][i], size),
                (sub["instrument_id"][min(i + 2, sub.height - 1)], -size),
            ]
    elif kind == "calendar_spread":
        for _ in range(max(1, n // 2)):
            e1, e2 = sorted(rng.choice(len(expiries), 2, replace=False))
            near = opts.filter(pl.col("expiry") == expiries[e1])
            near_id = _pick_option(rng, near, "C", (0.4, 0.6))
            strike = float(near.filter(pl.col("instrument_id") == near_id)["strike"][0])
            far = opts.filter((pl.col("expiry") == expiries[e2]) & (pl.col("option_type") == "C"))
            j = int((far["strike"] - strike).abs().arg_min() or 0)
            legs += [(near_id, -size), (far["instrument_id"][j], size)]
    elif kind == "basis":
        coins = size
        spot = chain.spot[u]
        for fut in [*chain.futures[u][-2:]][: max(1, n // 2)]:
            legs += [(spot, coins), (fut, -chain.contracts_for_coins(fut, coins))]
    elif kind == "box":
        e = int(rng.integers(len(expiries)))
        sub = opts.filter(pl.col("expiry") == expiries[e])
        strikes = sorted(set(sub["strike"].to_list()))
        k1, k2 = strikes[len(strikes) // 3], strikes[2 * len(strikes) // 3]
        by = {
            (s, t): i
            for i, s, t in zip(sub["instrument_id"], sub["strike"], sub["option_type"], strict=True)
        }
        for (k, t), q in {
            ((k1, "C"), size),
            ((k2, "C"), -size),
            ((k1, "P"), -size),
            ((k2, "P"), size),
        }:
            if (k, t) in by:
                legs.append((by[(k, t)], q))
    if len(legs) < n or kind == "directional":
        legs += _directional(rng, chain, n - len(legs))
    return legs


def _directional(rng: np.random.Generator, chain: _Chain, n: int) -> list[tuple[str, float]]:
    legs = []
    for _ in range(max(n, 0)):
        u = str(rng.choice(chain.underlyings))
        unit = {"BTC": 1.0, "ETH": 10.0, "SOL": 100.0}[u]
        coins = float(unit * rng.lognormal(-0.5, 1.0))
        sign = float(rng.choice([-1.0, 1.0]))
        r = rng.random()
        if r < 0.3 and chain.perps[u]:
            inst = str(rng.choice(chain.perps[u]))
        elif r < 0.5 and chain.futures[u]:
            inst = str(rng.choice(chain.futures[u]))
        else:
            opts = chain.options[u]
            inst = str(opts["instrument_id"][int(rng.integers(opts.height))])
        legs.append((inst, sign * chain.contracts_for_coins(inst, coins)))
    return legs


def _rough_margin(legs: list[tuple[str, float]], chain: _Chain) -> float:
    """USD: 15 % of the index per short option, 10 % of futures notional (a heuristic)."""
    total = 0.0
    for inst, q in legs:
        u = inst.split("-")[0].split("_")[0]
        index = chain.index.get(u, 0.0)
        if inst.endswith(("-C", "-P")):
            total += 0.15 * index * abs(q) if q < 0 else 0.0
        elif inst in chain.inverse_usd:
            total += 0.10 * abs(q) * chain.size[inst]
        elif inst != chain.spot.get(u):
            total += 0.10 * abs(q) * index
    return total


def _write(frame: pl.DataFrame, dataset: Dataset, folder: Path, file_format: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dataset.name}.{file_format}"
    frame = frame.select(list(dataset.columns))
    if file_format == "csv":
        frame.write_csv(path, datetime_format="%Y-%m-%dT%H:%M:%SZ", date_format="%Y-%m-%d")
    else:
        frame.write_parquet(path, statistics=False, compression="zstd")
    return path


def _counts(accounts: int, positions: int, kinds: list[str]) -> NDArray[np.int64]:
    """Positions per account: every account at least one while positions last, the rest
    spread by each archetype's weight (market makers hold large books)."""
    weight = {name: w for name, _, w in ARCHETYPES}
    if positions <= accounts:
        return np.array([1 if i < positions else 0 for i in range(accounts)])
    w = np.array([weight[k] for k in kinds], dtype=float)
    extra = positions - accounts
    share = np.floor(extra * w / w.sum()).astype(int)
    share[np.argsort(-w, kind="stable")[: extra - share.sum()]] += 1
    counts = 1 + share
    overflow = np.maximum(counts - MAX_POSITIONS_PER_ACCOUNT, 0)
    counts -= overflow
    spill = int(overflow.sum())
    i = 0
    while spill:
        room = MAX_POSITIONS_PER_ACCOUNT - counts[i % accounts]
        take = min(room, spill)
        counts[i % accounts] += take
        spill -= take
        i += 1
    return np.asarray(counts, dtype=np.int64)


def generate_landing(
    out_dir: Path,
    business_date: dt.date,
    *,
    accounts: int = 200,
    positions: int = 2_000,
    seed: int = 0,
    history_files: Sequence[Path] = (),
    file_format: Literal["csv", "parquet"] = "csv",
) -> GeneratedLanding:
    """Write ``<out_dir>/<date>/`` and ``<out_dir>/reference/price_history`` (see module)."""
    out_dir = Path(out_dir)
    if accounts < 1 or positions < 1:
        raise ValueError("accounts and positions must be at least 1")
    if positions > accounts * MAX_POSITIONS_PER_ACCOUNT:
        raise ValueError(
            f"{positions:,} positions need at least "
            f"{-(-positions // MAX_POSITIONS_PER_ACCOUNT):,} accounts "
            f"(at most {MAX_POSITIONS_PER_ACCOUNT:,} positions per account)"
        )
    rng = np.random.default_rng([seed, business_date.toordinal()])
    history = price_history(seed, business_date, tuple(Path(p) for p in history_files))
    market = build_market(business_date, history, rng)
    chain = _Chain(market)

    names = [name for name, _, _ in ARCHETYPES]
    shares = np.array([s for _, s, _ in ARCHETYPES])
    kinds = [names[i] for i in rng.choice(len(names), size=accounts, p=shares / shares.sum())]
    counts = _counts(accounts, positions, kinds)
    pos_acc: list[str] = []
    pos_inst: list[str] = []
    pos_qty: list[float] = []
    coll_rows: list[tuple[str, str, float]] = []
    for a in range(accounts):
        account = f"ACC{a + 1:06d}"
        n = int(counts[a])
        legs: dict[str, float] = {}
        tries = 0
        while len(legs) < n and tries < 50:
            batch = (
                _legs(kinds[a], rng, chain, n - len(legs))
                if tries == 0
                else _directional(rng, chain, n - len(legs))
            )
            for inst, q in batch:
                if len(legs) < n and inst not in legs and q != 0.0:
                    legs[inst] = q
            tries += 1
        for inst in sorted(legs):
            pos_acc.append(account)
            pos_inst.append(inst)
            pos_qty.append(legs[inst])
        need = _rough_margin(list(legs.items()), chain)
        factor = (
            rng.uniform(0.9, 1.3) if rng.random() < NEAR_CALL_SHARE else rng.lognormal(1.0, 0.4)
        )
        equity = max(need * factor, 1_000.0)
        coin = kinds[a] in ("covered_call", "basis") or rng.random() < 0.3
        if coin:
            asset = str(rng.choice(chain.coins))
            coll_rows.append((account, asset, round(equity / chain.index[asset], 8)))
        else:
            asset = "USDC" if rng.random() < 0.7 else "USDT"
            coll_rows.append((account, asset, round(equity, 2)))
        if kinds[a] == "covered_call":
            covered = sum(-q for _, q in legs.items() if q < 0)
            u = next(iter(legs)).split("-")[0] if legs else "BTC"
            if u in chain.coins and u != asset:
                coll_rows.append((account, u, round(covered, 8)))
    positions_frame = pl.DataFrame(
        {"account_id": pos_acc, "instrument_id": pos_inst, "quantity": pos_qty},
        schema=POSITIONS.schema,
    ).sort("account_id", "instrument_id")
    collateral = (
        pl.DataFrame(coll_rows, schema=COLLATERAL.schema, orient="row")
        .group_by("account_id", "asset")
        .agg(pl.col("amount").sum())
        .sort("account_id", "asset")
    )
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
    account_kind = {f"ACC{a + 1:06d}": kinds[a] for a in range(accounts)}
    return GeneratedLanding(folder, files, rows, dict(Counter(kinds)), account_kind)
