"""Invariants of every margin model on generated books, and the scenario engine against
a slow per-position reference loop."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from risk_core import eod
from risk_core.landing.generator import generate_landing
from risk_core.landing.reader import LandingData, read_landing
from risk_core.margin.cross import grid
from risk_core.pricing import black76
from risk_core.ruleset import load_ruleset

DATE = dt.date(2026, 11, 20)
RULESETS = ("cross-margin", "deribit-spm")


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> tuple[LandingData, dict[str, str]]:
    folder = tmp_path_factory.mktemp("book")
    out = generate_landing(folder, DATE, accounts=120, positions=1_500, seed=4)
    return read_landing(folder, DATE), out.account_archetype


def _tables(data: LandingData, ruleset: str) -> eod.MarginTables:
    rules = load_ruleset(ruleset)
    inputs = eod.margin_inputs(data, eod.instrument_table(data))
    return eod.margin_tables(eod.run_models(inputs, rules), rules)


@pytest.mark.parametrize("ruleset", RULESETS)
def test_components_and_contributions_add_up(book, ruleset: str) -> None:  # type: ignore[no-untyped-def]
    data, _ = book
    t = _tables(data, ruleset)
    acc = t.margin_account
    assert (acc["initial_margin"] >= 0).all() and (acc["maintenance_margin"] >= 0).all()
    assert set(acc["account_id"]) == set(data.collateral["account_id"]) | set(
        data.positions["account_id"]
    )
    sums = t.margin_component.group_by("account_id", "model", "pool_currency").agg(
        pl.col("amount").sum()
    )
    joined = acc.join(sums, on=["account_id", "model", "pool_currency"], how="left")
    gap = (joined["amount"].fill_null(0.0) - joined["initial_margin"]).abs()
    assert (gap <= 1e-9 * (1.0 + joined["initial_margin"])).all()
    portfolio = (
        acc.filter(pl.col("model") == "portfolio")
        .group_by("account_id")
        .agg(pl.col("initial_margin_usd").sum())
    )
    contrib = t.contribution_usd.group_by("account_id").agg(pl.col("margin_contribution_usd").sum())
    both = portfolio.join(contrib, on="account_id", how="left")
    gap = (both["margin_contribution_usd"].fill_null(0.0) - both["initial_margin_usd"]).abs()
    assert (gap <= 1e-6 * (1.0 + both["initial_margin_usd"])).all()


@pytest.mark.parametrize("ruleset", RULESETS)
def test_row_order_does_not_matter(book, ruleset: str) -> None:  # type: ignore[no-untyped-def]
    data, _ = book
    shuffled = LandingData(
        DATE,
        data.instruments.sample(fraction=1.0, shuffle=True, seed=1),
        data.marks.sample(fraction=1.0, shuffle=True, seed=2),
        data.index_prices.sample(fraction=1.0, shuffle=True, seed=3),
        data.positions.sample(fraction=1.0, shuffle=True, seed=4),
        data.collateral.sample(fraction=1.0, shuffle=True, seed=5),
        data.price_history.sample(fraction=1.0, shuffle=True, seed=6),
    )
    a = _tables(data, ruleset).margin_account
    b = _tables(shuffled, ruleset).margin_account
    assert a.equals(b)


@pytest.mark.parametrize("ruleset", RULESETS)
def test_zero_positions_zero_margin_and_monotone_in_size(book, ruleset: str) -> None:  # type: ignore[no-untyped-def]
    data, _ = book
    first = data.positions["account_id"][0]
    scaled = data.positions.filter(pl.col("account_id") != first).with_columns(
        pl.col("quantity") * 2.0
    )
    base = _tables(
        LandingData(
            DATE,
            data.instruments,
            data.marks,
            data.index_prices,
            data.positions.filter(pl.col("account_id") != first),
            data.collateral,
            data.price_history,
        ),
        ruleset,
    ).margin_account
    double = _tables(
        LandingData(
            DATE,
            data.instruments,
            data.marks,
            data.index_prices,
            scaled,
            data.collateral,
            data.price_history,
        ),
        ruleset,
    ).margin_account
    empty = base.filter((pl.col("account_id") == first) & (pl.col("model") == "portfolio"))
    assert empty.height >= 1 and (empty["initial_margin"] == 0).all()
    j = base.join(double, on=["account_id", "model", "pool_currency"], suffix="_2")
    assert (j["initial_margin_2"] >= j["initial_margin"] * (1 - 1e-12)).all()


def test_hedged_books_need_far_less_than_standard(book) -> None:  # type: ignore[no-untyped-def]
    data, kinds = book
    acc = _tables(data, "cross-margin").margin_account
    per = (
        acc.group_by("account_id", "model")
        .agg(pl.col("initial_margin_usd").sum())
        .pivot("model", index="account_id", values="initial_margin_usd")
        .with_columns(pl.col("account_id").replace_strict(kinds).alias("kind"))
    )
    by_kind = per.group_by("kind").agg(pl.col("portfolio").sum(), pl.col("standard").sum())
    ratios = {k: p / s for k, p, s in by_kind.iter_rows() if s > 0}
    for hedged in ("vertical_spread", "box", "market_maker"):
        if hedged in ratios:
            assert ratios[hedged] < 0.6, (hedged, ratios)
    with_positions = per.filter(pl.col("account_id").is_in(data.positions["account_id"].implode()))
    assert (with_positions["portfolio"] > 0).all()


def test_engine_against_slow_reference(book) -> None:  # type: ignore[no-untyped-def]
    data, _ = book
    inputs = eod.margin_inputs(data, eod.instrument_table(data))
    params = load_ruleset("cross-margin").models["portfolio"]
    scenarios, _, _ = grid(inputs, params)
    from risk_core.scenarios import revalue_usd

    fast = inputs.positions.account_pnl(revalue_usd(inputs.table, scenarios))
    t = inputs.table
    rng = np.random.default_rng(0)
    accounts = rng.choice(inputs.positions.n_accounts, 8, replace=False)
    cols = rng.choice(scenarios.n, 12, replace=False)
    frame = inputs.positions_frame
    codes = inputs.positions.instrument_code
    accs = inputs.positions.account_code
    for a in accounts:
        for s in cols:
            total = 0.0
            for row in np.flatnonzero(accs == a):
                i = codes[row]
                q = float(frame["quantity"][int(row)])
                m = scenarios.moves[t.underlying_code[i], s]
                if t.is_option[i]:
                    now = float(
                        black76.price(t.forward[i], t.strike[i], t.t[i], t.sigma[i], t.is_call[i])
                    )
                    then = float(
                        black76.price(
                            t.forward[i] * (1 + m),
                            t.strike[i],
                            t.t[i],
                            scenarios.sigma[i, s],
                            t.is_call[i],
                        )
                    )
                    total += q * t.units[i] * (then - now)
                else:
                    total += q * t.units[i] * t.forward[i] * m
            assert fast[a, s] == pytest.approx(total, rel=1e-10, abs=1e-8)
