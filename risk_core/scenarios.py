"""The scenario engine: revalue each instrument once per scenario, then aggregate.

Every scenario model (Deribit, SPAN-style grids, historical simulation) has the same
shape (METHODOLOGY.md section 2): an instrument P&L matrix ``(n_instruments,
n_scenarios)`` computed once, then a sparse ``(n_accounts, n_instruments)`` position
matrix times it gives account P&L per scenario, to which a model applies its own
aggregation. Instruments are thousands, positions millions: nothing here loops over
positions.

A scenario moves every underlying by a relative amount (``moves[u, s]``: F -> F (1 + m))
and sets each option's volatility (``sigma[i, s]``; unchanged when omitted). P&L is per
contract, in USD or, for inverse instruments, in the settlement coin.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp
from numpy.typing import NDArray

from risk_core.market import KIND_SPOT, InstrumentTable
from risk_core.pricing import black76

FloatArray = NDArray[np.float64]

#: Accounts per block when account x scenario matrices are formed (bounds memory).
ACCOUNT_BLOCK = 8_192


@dataclass(frozen=True)
class ScenarioSet:
    """Scenarios over the underlyings of an :class:`InstrumentTable`.

    ``moves``: relative underlying moves, shape ``(n_underlyings, n_scenarios)``, rows in
    the order of ``InstrumentTable.underlyings``. ``sigma``: option volatility per
    instrument and scenario ``(n_instruments, n_scenarios)``, or ``None`` for unchanged.
    ``horizon_days``: calendar days that pass in the scenario (options age by it).
    """

    names: tuple[str, ...]
    moves: FloatArray
    sigma: FloatArray | None = None
    horizon_days: float = 0.0

    def __post_init__(self) -> None:
        if self.moves.ndim != 2 or self.moves.shape[1] != len(self.names):
            raise ValueError("moves must be (n_underlyings, n_scenarios) with one name each")
        if np.any(self.moves <= -1.0):
            raise ValueError("a relative move must stay above -100 %")

    @property
    def n(self) -> int:
        return len(self.names)


def _instrument_moves(table: InstrumentTable, scenarios: ScenarioSet) -> FloatArray:
    return scenarios.moves[table.underlying_code, :]


def revalue_usd(table: InstrumentTable, scenarios: ScenarioSet) -> FloatArray:
    """USD P&L per contract, shape ``(n_instruments, n_scenarios)``.

    Options: Black-76 on the moved forward, the scenario volatility and the aged expiry,
    minus today's value. Futures and perpetuals (linear or inverse, in USD): ``units *
    F * m``. Spot: ``units * F * m``.
    """
    moves = _instrument_moves(table, scenarios)
    pnl = (table.units * table.forward)[:, None] * moves
    option = np.flatnonzero(table.is_option)
    if option.size:
        pnl[option] = (
            _option_value_usd(table, scenarios, option, moves[option])
            - (table.value_usd()[option, None])
        )
    return _finite(table, pnl)


def _finite(table: InstrumentTable, pnl: FloatArray) -> FloatArray:
    """``pnl``, or an error naming the instruments whose scenario P&L is not a number:
    a NaN loss would drop out of a tail search silently and understate the margin."""
    bad = ~np.isfinite(pnl).all(axis=1)
    if bad.any():
        names = table.instrument_id[bad]
        raise ValueError(
            f"scenario revaluation: P&L not finite for {names.size} instrument(s), e.g. "
            f"{', '.join(map(str, names[:5]))}"
        )
    return pnl


def revalue_coin(table: InstrumentTable, scenarios: ScenarioSet) -> FloatArray:
    """Coin P&L per contract of inverse instruments, shape ``(n_instruments, n_scenarios)``.

    Options: value in coin (USD value / forward) at the scenario minus today's. Futures
    and perpetuals of base size ``q``: ``q * m / (1 + m)``. Spot holdings of the coin have
    no coin P&L. Rows of linear instruments are zero: they do not belong to a coin pool.
    """
    moves = _instrument_moves(table, scenarios)
    pnl = np.where(table.inverse[:, None], table.units[:, None] * moves / (1.0 + moves), 0.0)
    pnl[table.kind == KIND_SPOT] = 0.0
    option = np.flatnonzero(table.is_option & table.inverse)
    if option.size:
        fwd = table.forward[option, None] * (1.0 + moves[option])
        now = table.value_usd()[option] / table.forward[option]
        pnl[option] = (
            _option_value_usd(table, scenarios, option, moves[option]) / fwd - now[:, None]
        )
    return _finite(table, pnl)


#: Option values are computed this many (instrument x scenario) cells at a time: the
#: pricing temporaries stay small (memory) and in the CPU cache (speed). Each cell is
#: priced on its own, so the blocking changes no bit.
REVALUE_CELLS = 1 << 18


def _option_value_usd(
    table: InstrumentTable, scenarios: ScenarioSet, rows: NDArray[np.intp], moves: FloatArray
) -> FloatArray:
    """USD value per contract of the options ``rows`` in every scenario (``moves``:
    their underlying's relative move per scenario, ``(len(rows), n_scenarios)``)."""
    out = np.empty(moves.shape)
    per_block = max(1, REVALUE_CELLS // max(moves.shape[1], 1))
    for start in range(0, rows.size, per_block):
        block = slice(start, start + per_block)
        r = rows[block]
        sigma = (
            np.broadcast_to(table.sigma[r, None], moves[block].shape)
            if scenarios.sigma is None
            else scenarios.sigma[r]
        )
        t = np.maximum(table.t[r] - scenarios.horizon_days / 365.0, 0.0)[:, None]
        value = black76.price(
            table.forward[r, None] * (1.0 + moves[block]),
            table.strike[r, None],
            t,
            sigma,
            table.is_call[r, None],
        )
        out[block] = value * table.units[r, None]
    return out


@dataclass(frozen=True)
class PositionMatrix:
    """Positions as a sparse ``(n_accounts, n_instruments)`` matrix of signed contracts."""

    accounts: tuple[str, ...]  #: sorted account ids, the row order
    matrix: sp.csr_array
    account_code: NDArray[np.int64]  #: per input position row
    instrument_code: NDArray[np.int64]  #: per input position row

    @classmethod
    def from_positions(
        cls, positions: pl.DataFrame, table: InstrumentTable, accounts: list[str] | None = None
    ) -> PositionMatrix:
        """Build from ``positions`` (account_id, instrument_id, quantity); ``accounts``
        may add accounts without positions (e.g. collateral only)."""
        ids = set(positions["account_id"].unique().to_list())
        if accounts is not None:
            ids.update(accounts)
        ordered = tuple(sorted(ids))
        code_of = {a: i for i, a in enumerate(ordered)}
        account_code = (
            positions["account_id"].replace_strict(code_of, return_dtype=pl.Int64).to_numpy()
        )
        instrument_code = table.codes(positions["instrument_id"])
        matrix = sp.csr_array(
            (positions["quantity"].to_numpy().astype(np.float64), (account_code, instrument_code)),
            shape=(len(ordered), len(table)),
        )
        matrix.sum_duplicates()
        return cls(ordered, matrix, account_code, instrument_code)

    @property
    def n_accounts(self) -> int:
        return len(self.accounts)

    def blocks(self, block: int = ACCOUNT_BLOCK) -> Iterator[slice]:
        for start in range(0, self.n_accounts, block):
            yield slice(start, min(start + block, self.n_accounts))

    def account_pnl(self, instrument_pnl: FloatArray, rows: slice | None = None) -> FloatArray:
        """Account P&L per scenario: positions (rows) times the instrument P&L matrix."""
        m = self.matrix if rows is None else self.matrix[rows]
        return np.asarray(m @ instrument_pnl)
