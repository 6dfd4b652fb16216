"""The strategies of the generated book, drawn in bulk per archetype.

:class:`Chain` holds the generated market as lookup arrays; each archetype's strategy is
then drawn for all of its accounts at once (NumPy, no loop over accounts), from one
seeded generator in a fixed order: same market, same counts and same generator state
give the same legs. Quantities are signed contracts: options, spot and linear contracts
in coins of the underlying, inverse futures and perpetuals in USD contracts. Which legs
an account keeps (unique instruments, exact counts) is decided by
:mod:`risk_core.landing.generator`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from risk_core.landing.generator_market import UNDERLYINGS, Market

I64 = NDArray[np.int64]
F64 = NDArray[np.float64]
Rng = np.random.Generator

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
NAMES = tuple(name for name, _, _ in ARCHETYPES)
#: A typical position of the generated book, in coins of the underlying.
TYPICAL_COINS = {"BTC": 1.0, "ETH": 10.0, "SOL": 100.0}
#: Underlyings accepted as coin collateral; covered calls and basis trades use only these.
COLLATERAL_COINS = ("BTC", "ETH")


@dataclass(frozen=True)
class Chain:
    """The generated market as lookup arrays.

    An instrument's code is its row in ``Market.instruments`` (sorted by instrument_id),
    an underlying's code its position in ``names``. Padded tables hold instrument codes,
    -1 where there is none, and ``n_*`` their real lengths. Option tables are indexed
    [underlying, expiry, ...] with expiries in time order; type 0 = put, 1 = call."""

    ids: pl.Series  #: instrument_id per code
    names: tuple[str, ...]  #: listed underlyings, in UNDERLYINGS order
    underlying: I64  #: per instrument: its underlying's code
    size: F64  #: contract size (USD where ``inverse_usd``, else coins)
    inverse_usd: NDArray[np.bool_]  #: inverse futures and perpetuals, counted in USD
    is_option: NDArray[np.bool_]
    is_call: NDArray[np.bool_]
    is_spot: NDArray[np.bool_]
    strike: F64  #: USD, 0 for non-options
    delta: F64  #: unit delta of options (coins per contract), 0 for others
    index: F64  #: per underlying: index price, USD
    unit: F64  #: per underlying: TYPICAL_COINS
    coins: I64  #: codes of the listed COLLATERAL_COINS
    spot: I64  #: [underlying]
    perp: I64  #: [underlying, i] by instrument_id
    n_perp: I64
    future: I64  #: [underlying, i] by expiry
    n_future: I64
    option: I64  #: [underlying, i] by instrument_id
    n_option: I64
    grid: I64  #: [underlying, expiry, strike rank, type]
    by_strike: I64  #: [underlying, expiry, type, i]: the listed ones, strike ascending
    n_by_strike: I64  #: [underlying, expiry, type]
    box_strike: I64  #: [underlying, expiry, i]: strike ranks listing both call and put
    n_box_strike: I64  #: [underlying, expiry]

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def n_expiries(self) -> int:
        return int(self.grid.shape[1])

    @property
    def every_underlying(self) -> I64:
        return np.arange(len(self.names), dtype=np.int64)

    def contracts_for_coins(self, inst: I64, coins: F64) -> F64:
        """Contracts of ``inst`` worth ``coins`` of the underlying: whole USD contracts
        (at least 1) or tenths of coin contracts (at least 0.1); never zero."""
        usd = coins * self.index[self.underlying[inst]] / self.size[inst]
        by_usd = np.maximum(1.0, np.round(usd))
        by_coin = np.maximum(0.1, np.round(coins / self.size[inst], 1))
        return np.where(self.inverse_usd[inst], by_usd, by_coin)

    @staticmethod
    def choose(table: I64, listed: I64, u: I64, rng: Rng) -> I64:
        """One entry of row ``u[i]`` of a padded table each, uniformly (-1 if empty)."""
        return table[u, (rng.random(u.size) * listed[u]).astype(np.int64)]

    def pick_in_band(
        self, u: I64, expiry: I64, calls: bool, band: tuple[float, float], rng: Rng
    ) -> I64:
        """One option each of underlying ``u[i]`` and expiry ``expiry[i]`` whose |delta|
        is in ``band``, uniformly; any of that type and expiry when none is (-1: none)."""
        codes = self.by_strike[u, expiry, int(calls)]
        listed = codes >= 0
        delta = np.where(listed, np.abs(self.delta[codes]), -1.0)
        ok = listed & (delta >= band[0]) & (delta <= band[1])
        ok = np.where(ok.any(axis=1)[:, None], ok, listed)
        j = (rng.random(u.size) * ok.sum(axis=1)).astype(np.int64)
        col = np.argmax(np.cumsum(ok, axis=1) > j[:, None], axis=1)
        return np.where(ok.any(axis=1), codes[np.arange(u.size), col], -1)


def build_chain(market: Market) -> Chain:
    """The lookup arrays of ``market`` (see :class:`Chain`); no randomness."""
    listed = set(market.instruments["underlying"])
    names = tuple(s.name for s in UNDERLYINGS if s.name in listed)
    to_code = {name: i for i, name in enumerate(names)}
    inst = market.instruments.with_columns(
        pl.col("underlying").replace_strict(to_code, return_dtype=pl.Int64).alias("u"),
        pl.col("instrument_id").replace_strict(market.option_delta, default=0.0).alias("delta"),
    ).with_row_index("code")
    u = inst["u"].to_numpy()
    kind = inst["kind"].to_numpy()
    code = np.arange(inst.height, dtype=np.int64)
    opts = inst.filter(pl.col("kind") == "option").select(
        pl.col("code").cast(pl.Int64),
        "u",
        pl.col("expiry").rank("dense").cast(pl.Int64) - 1,
        pl.col("strike").rank("dense").over("u", "expiry").cast(pl.Int64) - 1,
        (pl.col("option_type") == "C").cast(pl.Int64),
    )
    oc, ou, oe, ok, ot = (opts.to_series(i).to_numpy() for i in range(5))
    grid = np.full((len(names), oe.max() + 1, ok.max() + 1, 2), -1, dtype=np.int64)
    grid[ou, oe, ok, ot] = oc
    by_type = np.moveaxis(grid, 3, 2)
    both = (grid[..., 0] >= 0) & (grid[..., 1] >= 0)  # call and put listed
    ranks = np.broadcast_to(np.arange(grid.shape[2], dtype=np.int64), both.shape)
    expiry_ns = inst["expiry"].dt.epoch("ns").fill_null(0).to_numpy()

    def of(kind_name: str, order_by: I64) -> tuple[I64, I64]:
        rows = [code[(u == i) & (kind == kind_name)] for i in range(len(names))]
        return _padded([r[np.argsort(order_by[r], kind="stable")] for r in rows])

    perp, n_perp = of("perpetual", code)
    future, n_future = of("future", expiry_ns)
    option, n_option = of("option", code)
    index = dict(market.index_prices.iter_rows())
    return Chain(
        ids=inst["instrument_id"],
        names=names,
        underlying=u,
        size=inst["contract_size"].to_numpy(),
        inverse_usd=(inst["contract_unit"] == "usd").to_numpy(),
        is_option=kind == "option",
        is_call=(inst["option_type"] == "C").fill_null(False).to_numpy(),
        is_spot=kind == "spot",
        strike=inst["strike"].fill_null(0.0).to_numpy(),
        delta=inst["delta"].to_numpy(),
        index=np.array([index[n] for n in names], dtype=np.float64),
        unit=np.array([TYPICAL_COINS.get(n, 1.0) for n in names], dtype=np.float64),
        coins=np.array([to_code[c] for c in COLLATERAL_COINS if c in to_code], dtype=np.int64),
        spot=np.array([code[(u == i) & (kind == "spot")][0] for i in range(len(names))]),
        perp=perp,
        n_perp=n_perp,
        future=future,
        n_future=n_future,
        option=option,
        n_option=n_option,
        grid=grid,
        by_strike=_listed_first(by_type, by_type >= 0),
        n_by_strike=(by_type >= 0).sum(axis=3),
        box_strike=_listed_first(ranks, both),
        n_box_strike=both.sum(axis=2),
    )


def _padded(groups: list[I64]) -> tuple[I64, I64]:
    """Code lists as one table padded with -1 (at least one column), and their lengths."""
    lengths = np.array([g.size for g in groups], dtype=np.int64)
    table = np.full((len(groups), max(1, int(lengths.max(initial=0)))), -1, dtype=np.int64)
    for i, g in enumerate(groups):
        table[i, : g.size] = g
    return table, lengths


def _listed_first(values: I64, keep: NDArray[np.bool_]) -> I64:
    """Along the last axis: the kept values first, in their order, then -1."""
    order = np.argsort(~keep, axis=-1, kind="stable")
    kept = np.take_along_axis(keep, order, axis=-1)
    return np.where(kept, np.take_along_axis(values, order, axis=-1), -1)


@dataclass(frozen=True)
class Legs:
    """Positions as parallel arrays: account number (0-based), instrument code (-1 for
    none) and signed contracts. Within an account, earlier legs take precedence."""

    account: I64
    instrument: I64
    quantity: F64

    @staticmethod
    def concat(parts: list[Legs]) -> Legs:
        return Legs(
            np.concatenate([np.zeros(0, np.int64), *(p.account for p in parts)]),
            np.concatenate([np.zeros(0, np.int64), *(p.instrument for p in parts)]),
            np.concatenate([np.zeros(0), *(p.quantity for p in parts)]),
        )

    def take(self, rows: I64) -> Legs:
        return Legs(self.account[rows], self.instrument[rows], self.quantity[rows])


def strategy_legs(kinds: I64, counts: I64, chain: Chain, rng: Rng) -> tuple[Legs, I64]:
    """The strategy legs of every account with ``counts > 0``, by archetype
    (``NAMES[kinds[a]]``), and the code of the underlying each account trades (-1 for
    accounts without positions). Directional accounts get no strategy legs: they are
    filled with :func:`directional` legs like every account short of its count."""
    underlying = np.full(kinds.size, -1, dtype=np.int64)
    parts = []
    for code, name in enumerate(NAMES):
        acc = np.flatnonzero((kinds == code) & (counts > 0))
        coin_only = name in ("covered_call", "basis") and chain.coins.size > 0
        pool = chain.coins if coin_only else chain.every_underlying
        u = pool[rng.integers(pool.size, size=acc.size)]
        size = np.round(chain.unit[u] * rng.lognormal(0.0, 0.8, acc.size), 1)
        size[size == 0.0] = 0.1
        underlying[acc] = u
        n = counts[acc]
        if name in ("covered_call", "put_seller"):
            parts.append(_short_options(acc, n, u, size, chain, rng, name == "covered_call"))
        elif name != "directional":
            parts.append(_STRATEGIES[name](acc, n, u, size, chain, rng))
    return Legs.concat(parts), underlying


def _market_makers(acc: I64, n: I64, u: I64, size: F64, chain: Chain, rng: Rng) -> Legs:
    """n - 1 distinct options of one underlying (at most all listed) of random sign and
    0.5-5 times ``size`` contracts, then a delta hedge in the underlying's first perpetual
    (the inverse one for BTC and ETH)."""
    k = np.minimum(np.maximum(n - 1, 1), chain.n_option[u])
    rows_parts, inst_parts = [], []
    for code in range(len(chain.names)):
        listed = int(chain.n_option[code])
        rows = np.flatnonzero(u == code)
        for start in range(0, rows.size, 2_048):  # bounds the memory of the random keys
            chunk = rows[start : start + 2_048]
            order = np.argsort(rng.random((chunk.size, listed)), axis=1)
            rows_parts.append(np.repeat(chunk, k[chunk]))
            inst_parts.append(chain.option[code][order[np.arange(listed) < k[chunk, None]]])
    rows = np.concatenate([np.zeros(0, np.int64), *rows_parts])
    inst = np.concatenate([np.zeros(0, np.int64), *inst_parts])
    sign = np.where(rng.random(rows.size) < 0.5, -1.0, 1.0)
    qty = np.round(sign * size[rows] * rng.uniform(0.5, 5.0, rows.size), 1)
    qty[qty == 0.0] = 0.1
    delta = np.bincount(rows, weights=chain.delta[inst] * qty, minlength=acc.size)  # coins
    perp = chain.perp[u, 0]
    hedge = -chain.contracts_for_coins(perp, np.abs(delta)) * np.sign(delta)
    hedge = np.where(delta == 0.0, 1.0, hedge)
    return Legs.concat([Legs(acc[rows], inst, qty), Legs(acc, perp, hedge)])


def _short_options(
    acc: I64, n: I64, u: I64, size: F64, chain: Chain, rng: Rng, calls: bool
) -> Legs:
    """Covered calls (calls of delta 0.15-0.40) or put selling (puts of |delta|
    0.10-0.35): short ``size`` contracts in each of n distinct expiries (at most all)."""
    band = (0.15, 0.40) if calls else (0.10, 0.35)
    rows, e = _distinct_expiries(np.minimum(n, chain.n_expiries), chain.n_expiries, rng)
    return Legs(acc[rows], chain.pick_in_band(u[rows], e, calls, band, rng), -size[rows])


def _verticals(acc: I64, n: I64, u: I64, size: F64, chain: Chain, rng: Rng) -> Legs:
    """Call spreads in n / 2 distinct expiries: long ``size`` calls of a random strike,
    short as many calls two listed strikes higher."""
    take = np.minimum(np.maximum(n // 2, 1), chain.n_expiries)
    rows, e = _distinct_expiries(take, chain.n_expiries, rng)
    listed = chain.n_by_strike[u[rows], e, 1]
    i = (rng.random(rows.size) * np.maximum(listed - 2, 1)).astype(np.int64)
    j = np.maximum(np.minimum(i + 2, listed - 1), 0)
    calls = chain.by_strike[u[rows], e, 1]
    at = np.arange(rows.size)
    return _long_short(acc[rows], calls[at, i], calls[at, j], size[rows])


def _calendars(acc: I64, n: I64, u: I64, size: F64, chain: Chain, rng: Rng) -> Legs:
    """n / 2 call calendars: short ``size`` calls of delta 0.40-0.60 of an expiry, long
    as many calls of the nearest strike of a later expiry."""
    if chain.n_expiries < 2:
        return Legs.concat([])
    rows = np.repeat(np.arange(acc.size), np.maximum(n // 2, 1))
    first = rng.integers(chain.n_expiries, size=rows.size)
    second = rng.integers(chain.n_expiries - 1, size=rows.size)
    second += second >= first  # two distinct expiries
    near_e, far_e = np.minimum(first, second), np.maximum(first, second)
    near = chain.pick_in_band(u[rows], near_e, True, (0.40, 0.60), rng)
    far_calls = chain.by_strike[u[rows], far_e, 1]
    gap = np.abs(chain.strike[far_calls] - chain.strike[near][:, None])
    gap = np.where(far_calls >= 0, gap, np.inf)
    far = far_calls[np.arange(rows.size), np.argmin(gap, axis=1)]
    return _long_short(acc[rows], np.where(near >= 0, far, -1), near, size[rows])


def _basis(acc: I64, n: I64, u: I64, size: F64, chain: Chain, rng: Rng) -> Legs:
    """Long ``size`` coins of spot, short futures worth as many coins in each of the
    two longest-dated futures (only the second-longest below four positions)."""
    listed = chain.n_future[u]
    first = np.maximum(listed - 2, 0)
    take = np.minimum(np.maximum(n // 2, 1), listed - first)
    rows = np.repeat(np.arange(acc.size), take)
    col = first[rows] + np.arange(rows.size) - np.repeat(np.cumsum(take) - take, take)
    fut = chain.future[u[rows], col]
    short = -chain.contracts_for_coins(fut, size[rows])
    return Legs.concat([Legs(acc, chain.spot[u], size), Legs(acc[rows], fut, short)])


def _boxes(acc: I64, n: I64, u: I64, size: F64, chain: Chain, rng: Rng) -> Legs:
    """A box of one random expiry: long call and short put at the strike a third up the
    strikes listing both, short call and long put two thirds up; ``size`` contracts."""
    e = rng.integers(chain.n_expiries, size=acc.size)
    listed = chain.n_box_strike[u, e]
    k1 = chain.box_strike[u, e, listed // 3]
    k2 = chain.box_strike[u, e, 2 * listed // 3]
    grid = chain.grid[u, e]  # [account, strike rank, type]
    at = np.arange(acc.size)
    legs = [(k1, 1, size), (k2, 1, -size), (k1, 0, -size), (k2, 0, size)]
    inst = np.stack([np.where(listed > 0, grid[at, k, t], -1) for k, t, _ in legs], axis=1)
    qty = np.stack([q for _, _, q in legs], axis=1)
    return Legs(np.repeat(acc, 4), inst.ravel(), qty.ravel())


_STRATEGIES = {
    "market_maker": _market_makers,
    "vertical_spread": _verticals,
    "calendar_spread": _calendars,
    "basis": _basis,
    "box": _boxes,
}


def _distinct_expiries(take: I64, n_expiries: int, rng: Rng) -> tuple[I64, I64]:
    """For each row i, ``take[i]`` distinct expiries in random order: (rows, expiries)."""
    order = np.argsort(rng.random((take.size, n_expiries)), axis=1)
    return np.repeat(np.arange(take.size), take), order[np.arange(n_expiries) < take[:, None]]


def _long_short(acc: I64, long: I64, short: I64, size: F64) -> Legs:
    """Two legs per row, in this order: ``long`` +``size``, ``short`` -``size``."""
    inst = np.stack([long, short], axis=1).ravel()
    qty = np.stack([size, -size], axis=1).ravel()
    return Legs(np.repeat(acc, 2), inst, qty)


def directional(acc: I64, chain: Chain, rng: Rng) -> Legs:
    """One leg per entry of ``acc``: a random underlying, then one of its perpetuals
    (30 %), futures (20 %) or options (else, or when it lists no such contract)."""
    u = rng.integers(len(chain.names), size=acc.size)
    r = rng.random(acc.size)
    perp = chain.choose(chain.perp, chain.n_perp, u, rng)
    fut = chain.choose(chain.future, chain.n_future, u, rng)
    opt = chain.choose(chain.option, chain.n_option, u, rng)
    inst = np.where((r < 0.3) & (perp >= 0), perp, np.where((r < 0.5) & (fut >= 0), fut, opt))
    return Legs(acc, inst, directional_quantity(inst, chain, rng))


def directional_quantity(inst: I64, chain: Chain, rng: Rng) -> F64:
    """Long or short (even odds) contracts worth a lognormal number of coins (median
    0.61 TYPICAL_COINS of the underlying); never zero."""
    coins = chain.unit[chain.underlying[inst]] * rng.lognormal(-0.5, 1.0, inst.size)
    sign = np.where(rng.random(inst.size) < 0.5, -1.0, 1.0)
    return sign * chain.contracts_for_coins(inst, coins)
