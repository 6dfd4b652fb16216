"""``cross_grid``: invariants, collateral wrong-way risk, hedges, the inter-underlying
credit, size and order properties, and the fast path against a slow per-position loop."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import polars as pl
import pytest

from risk_core import eod
from risk_core.landing.generator import generate_landing
from risk_core.landing.reader import LandingData, read_landing
from risk_core.margin import cross, standard
from risk_core.margin.base import MarginInputs, MarginResult
from risk_core.pricing import black76
from risk_core.ruleset import load_ruleset

DATE = dt.date(2026, 11, 20)
RULES = load_ruleset("cross-margin")
PARAMS: dict[str, Any] = RULES.models["portfolio"]
Book = list[tuple[str, str, float]]  # account, instrument or asset, quantity or amount


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> LandingData:
    folder = tmp_path_factory.mktemp("cross")
    generate_landing(folder, DATE, accounts=60, positions=600, seed=11)
    return read_landing(folder, DATE)


def _with(data: LandingData, positions: Book, collateral: Book) -> MarginInputs:
    pos = pl.DataFrame(
        positions,
        schema={"account_id": pl.String, "instrument_id": pl.String, "quantity": pl.Float64},
        orient="row",
    )
    coll = pl.DataFrame(
        collateral,
        schema={"account_id": pl.String, "asset": pl.String, "amount": pl.Float64},
        orient="row",
    )
    book = LandingData(
        DATE, data.instruments, data.marks, data.index_prices, pos, coll, data.price_history
    )
    return eod.margin_inputs(book, eod.instrument_table(book))


def _im(result: MarginResult) -> dict[str, float]:
    return dict(zip(result.accounts["account_id"], result.accounts["initial_margin"], strict=True))


def _component(result: MarginResult, account: str, name: str) -> float:
    c = result.components.filter((pl.col("account_id") == account) & (pl.col("component") == name))
    return float(c["amount"].sum())


def _option(data: LandingData, underlying: str, kind: str, moneyness: float, expiry: int) -> str:
    """The option of the ``expiry``-th expiry (0 = nearest) whose strike is nearest to
    ``moneyness`` x index."""
    index = float(data.index_prices.filter(pl.col("underlying") == underlying)["index_price"][0])
    opts = data.instruments.filter(
        (pl.col("kind") == "option")
        & (pl.col("underlying") == underlying)
        & (pl.col("option_type") == kind)
    )
    when = opts["expiry"].unique().sort()[expiry]
    sub = opts.filter(pl.col("expiry") == when)
    i = int((sub["strike"] - moneyness * index).abs().arg_min() or 0)
    return str(sub["instrument_id"][i])


def _index(data: LandingData, asset: str) -> float:
    return float(data.index_prices.filter(pl.col("underlying") == asset)["index_price"][0])


def _check_invariants(inputs: MarginInputs, result: MarginResult) -> None:
    acc = result.accounts
    im = acc["initial_margin"].to_numpy()
    assert np.all(im >= 0)
    np.testing.assert_allclose(acc["maintenance_margin"].to_numpy(), PARAMS["mm_factor"] * im)
    comp = result.components.group_by("account_id").agg(pl.col("amount").sum())
    contrib = result.contributions.group_by("account_id").agg(pl.col("amount").sum())
    for other in (comp, contrib):
        j = acc.join(other, on="account_id", how="left").with_columns(pl.col("amount").fill_null(0))
        gap = (j["amount"] - j["initial_margin"]).abs().to_numpy()
        assert np.all(gap <= 1e-9 * (1.0 + j["initial_margin"].to_numpy())), gap.max()
    assert result.contributions.height == inputs.positions_frame.height
    flat = set(inputs.positions.accounts) - set(inputs.positions_frame["account_id"])
    assert (acc.filter(pl.col("account_id").is_in(list(flat)))["initial_margin"] == 0).all()


def test_invariants_on_a_generated_book(data: LandingData) -> None:
    collateral = [*data.collateral.rows(), ("ZZ_ONLY_COLLATERAL", "BTC", 3.0)]
    inputs = _with(data, data.positions.rows(), collateral)
    result = cross.compute(inputs, PARAMS)
    _check_invariants(inputs, result)
    assert _im(result)["ZZ_ONLY_COLLATERAL"] == 0.0
    names = set(result.components["component"])
    assert names == {
        "worst_scenario_loss",
        "collateral_wrong_way",
        "inter_underlying_credit",
        "short_option_minimum",
        "liquidity_addon",
    }


def test_btc_collateral_behind_a_short_put_is_wrong_way(data: LandingData) -> None:
    put = _option(data, "BTC", "P", 0.9, 4)
    usd = 30_000.0
    inputs = _with(
        data,
        [("A_BTC", put, -1.0), ("B_USDC", put, -1.0)],
        [("A_BTC", "BTC", usd / _index(data, "BTC")), ("B_USDC", "USDC", usd)],
    )
    result = cross.compute(inputs, PARAMS)
    im = _im(result)
    assert im["A_BTC"] > 1.1 * im["B_USDC"]
    assert _component(result, "A_BTC", "collateral_wrong_way") > 0
    assert _component(result, "B_USDC", "collateral_wrong_way") == 0
    # Same loss before the collateral moves: the difference is the wrong-way component.
    assert _component(result, "A_BTC", "worst_scenario_loss") == pytest.approx(
        _component(result, "B_USDC", "worst_scenario_loss")
    )
    _check_invariants(inputs, result)


def _standard_im(inputs: MarginInputs) -> dict[str, float]:
    return _im(standard.compute(inputs, RULES.models["standard"]))


def test_hedged_books_need_far_less_than_naked_and_standard(data: LandingData) -> None:
    atm_near = _option(data, "BTC", "C", 1.0, 4)
    atm_far = _option(data, "BTC", "C", 1.0, 7)
    k1c, k2c = _option(data, "BTC", "C", 0.95, 4), _option(data, "BTC", "C", 1.05, 4)
    k1p, k2p = _option(data, "BTC", "P", 0.95, 4), _option(data, "BTC", "P", 1.05, 4)
    table = eod.instrument_table(data)
    row = int(np.flatnonzero(table.instrument_id == atm_near)[0])
    delta = float(table.unit_greeks().delta[row])
    perp = "BTC-PERPETUAL"
    perp_units = float(table.units[np.flatnonzero(table.instrument_id == perp)[0]])
    books: dict[str, Book] = {
        "naked_call": [("naked_call", atm_near, -10.0)],
        "delta_hedged": [
            ("delta_hedged", atm_near, -10.0),
            ("delta_hedged", perp, 10 * delta / perp_units),
        ],
        "covered_call": [("covered_call", atm_near, -10.0)],  # covered by 10 BTC collateral
        "calendar": [("calendar", atm_near, -10.0), ("calendar", atm_far, 10.0)],
        "vertical": [("vertical", k1c, 10.0), ("vertical", k2c, -10.0)],
        "box": [("box", k1c, 10.0), ("box", k2c, -10.0), ("box", k1p, -10.0), ("box", k2p, 10.0)],
    }
    positions = [p for b in books.values() for p in b]
    collateral = [(a, "USDC", 1e6) for a in books if a != "covered_call"]
    inputs = _with(data, positions, [*collateral, ("covered_call", "BTC", 10.0)])
    result = cross.compute(inputs, PARAMS)
    _check_invariants(inputs, result)
    im, std = _im(result), _standard_im(inputs)
    assert im["naked_call"] > 0.5 * std["naked_call"]
    for hedged in ("delta_hedged", "calendar", "vertical", "box"):
        assert im[hedged] < 0.5 * std[hedged], (hedged, im[hedged], std[hedged])
        assert im[hedged] < 0.5 * im["naked_call"], (hedged, im[hedged])
    # A covered call is economically a short put: the coin collateral pays for the call's
    # loss (g_s > 1 when BTC rises) but the requirement is still the collateral needed
    # for that loss, so it is below the naked call and the standard, not far below.
    assert im["covered_call"] < 0.9 * im["naked_call"]
    assert im["covered_call"] < 0.7 * std["covered_call"]
    assert _component(result, "covered_call", "collateral_wrong_way") < 0


def _pair_book(data: LandingData, eth_sign: float) -> Book:
    usd = 1_000_000.0
    return [
        ("pair", "BTC_USDC-PERPETUAL", usd / _index(data, "BTC")),
        ("pair", "ETH_USDC-PERPETUAL", eth_sign * usd / _index(data, "ETH")),
        ("btc_leg", "BTC_USDC-PERPETUAL", usd / _index(data, "BTC")),
        ("eth_leg", "ETH_USDC-PERPETUAL", eth_sign * usd / _index(data, "ETH")),
    ]


def test_inter_underlying_credit_for_an_opposite_btc_eth_pair(data: LandingData) -> None:
    inputs = _with(
        data, _pair_book(data, -1.0), [(a, "USDC", 1e6) for a in ("pair", "btc_leg", "eth_leg")]
    )
    result = cross.compute(inputs, PARAMS)
    _check_invariants(inputs, result)
    im = _im(result)
    credit = -_component(result, "pair", "inter_underlying_credit")
    assert credit > 0
    assert credit <= min(im["btc_leg"], im["eth_leg"]) * (1 + 1e-12)  # bounded by the smaller leg
    assert im["pair"] == pytest.approx(im["btc_leg"] + im["eth_leg"] - credit)
    # SPAN: equal USD deltas, whole legs in the spread: credit = rate x both price risks,
    # unless the smaller-leg cap binds.
    rate = PARAMS["offsets"][0]["credit_rate"]
    expected = min(rate * (im["btc_leg"] + im["eth_leg"]), min(im["btc_leg"], im["eth_leg"]))
    assert credit == pytest.approx(expected, rel=1e-6)
    # Same direction: no credit.
    same = cross.compute(_with(data, _pair_book(data, 1.0), [("pair", "USDC", 1e6)]), PARAMS)
    assert _component(same, "pair", "inter_underlying_credit") == 0.0


def test_credit_rule_by_delta_ratio() -> None:
    # Two legs of 6,000 outright price risk each side... CME's shape: 2 x 3,000 at 55 %.
    pr = np.array([[3_000.0, 3_000.0]])
    delta = np.array([[10.0, -20.0]])
    offsets: list[dict[str, Any]] = [
        {"pair": ["A", "B"], "delta_ratio": [1.0, 2.0], "credit_rate": 0.55}
    ]
    offsets[0]["cap_at_smaller_leg"] = False
    credit = cross.inter_underlying_credit(pr, delta, ("A", "B"), offsets)
    assert credit.sum() == pytest.approx(0.55 * 6_000.0)  # 10 spreads use both legs fully
    assert 6_000.0 - credit.sum() == pytest.approx(2_700.0)  # CME corn/soy example
    half = cross.inter_underlying_credit(pr, np.array([[5.0, -20.0]]), ("A", "B"), offsets)
    # 5 spreads: all of A (3,000 x 0.55) and half of B (1,500 x 0.55).
    np.testing.assert_allclose(half, [[1_650.0, 825.0]])
    offsets[0]["cap_at_smaller_leg"] = True  # the ruleset's default: at most the smaller leg
    capped = cross.inter_underlying_credit(pr, delta, ("A", "B"), offsets)
    np.testing.assert_allclose(capped, [[1_500.0, 1_500.0]])


def test_short_option_minimum_and_liquidity_addon(data: LandingData) -> None:
    # A tight bull put spread: its scan risk (<= strike width 500 USD per unit) is below
    # the minimum of 1 % of the index (~1,076 USD) per short option.
    puts = data.instruments.filter(
        (pl.col("kind") == "option")
        & (pl.col("underlying") == "BTC")
        & (pl.col("option_type") == "P")
    )
    near = puts.filter(pl.col("expiry") == puts["expiry"].min()).sort("strike")
    i = int((near["strike"] - _index(data, "BTC")).abs().arg_min() or 1)
    short, long = str(near["instrument_id"][i]), str(near["instrument_id"][i - 1])
    assert 0 < near["strike"][i] - near["strike"][i - 1] <= 1_000
    big = 200.0  # BTC spot units, ~21 M USD against a 5 M threshold
    inputs = _with(
        data,
        [("som", short, -3.0), ("som", long, 3.0), ("liq", "BTC", big), ("small", "BTC", 1.0)],
        [("som", "USDC", 1e5), ("liq", "USDC", 1e7), ("small", "USDC", 1e5)],
    )
    result = cross.compute(inputs, PARAMS)
    _check_invariants(inputs, result)
    im = _im(result)
    index = _index(data, "BTC")
    assert im["som"] == pytest.approx(3.0 * PARAMS["short_option_min_rate"] * index, rel=1e-9)
    assert _component(result, "som", "short_option_minimum") > 0
    notional = big * index
    excess = notional - PARAMS["underlyings"]["BTC"].get("liquidity_threshold_usd", 5e6)
    addon = PARAMS["liquidity_rate"] * excess * np.sqrt(excess / 5e6)
    assert _component(result, "liq", "liquidity_addon") == pytest.approx(addon)
    assert _component(result, "small", "liquidity_addon") == 0.0


@pytest.mark.parametrize("seed", [1, 2])
def test_monotone_in_size_and_order_free(data: LandingData, seed: int) -> None:
    rng = np.random.default_rng(seed)
    positions = data.positions.sample(fraction=1.0, shuffle=True, seed=seed)
    collateral = data.collateral.sample(fraction=1.0, shuffle=True, seed=seed + 10)
    base = cross.compute(_with(data, data.positions.rows(), data.collateral.rows()), PARAMS)
    shuffled = cross.compute(_with(data, positions.rows(), collateral.rows()), PARAMS)
    assert base.accounts.equals(shuffled.accounts)
    previous = base.accounts["initial_margin"].to_numpy()
    for k in sorted(rng.uniform(1.0, 4.0, 3)):
        scaled = data.positions.with_columns(pl.col("quantity") * k)
        im = cross.compute(_with(data, scaled.rows(), data.collateral.rows()), PARAMS)
        now = im.accounts["initial_margin"].to_numpy()
        assert np.all(now >= previous * (1 - 1e-12))
        previous = now


def test_fast_path_against_a_slow_per_position_loop(data: LandingData) -> None:
    """Scan risk (worst loss + wrong way) recomputed position by position, scenario by
    scenario, with the collateral growth from a plain loop over collateral rows."""
    rng = np.random.default_rng(5)
    coll = data.collateral.rows() + [
        (a, str(rng.choice(["BTC", "ETH", "SOL"])), float(rng.uniform(0.1, 3.0)))
        for a in data.positions["account_id"].unique().sort().to_list()[::3]
    ]
    inputs = _with(data, data.positions.rows(), coll)
    result = cross.compute(inputs, PARAMS)
    g = cross.scan_grid(inputs, PARAMS)
    t = inputs.table
    haircuts = PARAMS["haircuts"]
    u_of = {u: i for i, u in enumerate(t.underlyings)}
    accounts = rng.choice(inputs.positions.accounts, 10, replace=False)
    for account in accounts:
        rows = [r for r in inputs.positions_frame.rows() if r[0] == account]
        c_rows = [r for r in coll if r[0] == account]
        today = sum(a * inputs.index_prices[s] * (1 - haircuts.get(s, 0.0)) for _, s, a in c_rows)
        scan = np.zeros(len(t.underlyings))
        for s in range(g.scenarios.n):
            loss = 0.0
            for _, instrument, q in rows:
                i = int(np.flatnonzero(t.instrument_id == instrument)[0])
                m = g.scenarios.moves[t.underlying_code[i], s]
                if t.is_option[i]:
                    args = (t.strike[i], t.t[i])
                    now = black76.price(t.forward[i], *args, t.sigma[i], t.is_call[i])
                    then = black76.price(
                        t.forward[i] * (1 + m), *args, g.scenarios.sigma[i, s], t.is_call[i]
                    )
                    loss -= q * t.units[i] * float(then - now)
                else:
                    loss -= q * t.units[i] * t.forward[i] * m
            after = 0.0
            for _, asset, amount in c_rows:
                move = g.scenarios.moves[u_of[asset], s] if asset in u_of else 0.0
                after += (
                    amount
                    * inputs.index_prices[asset]
                    * (1 - haircuts.get(asset, 0.0))
                    * (1 + move)
                )
            growth = max(after / today, PARAMS["min_collateral_growth"]) if today > 0 else 1.0
            u = g.owner[s]
            scan[u] = max(scan[u], loss * g.weight[s] / growth)
        fast = _component(result, account, "worst_scenario_loss") + _component(
            result, account, "collateral_wrong_way"
        )
        assert fast == pytest.approx(scan.sum(), rel=1e-9, abs=1e-6)


def test_collateral_growth_of_an_account_does_not_depend_on_its_company() -> None:
    """Scenarios that move several collateral assets at once: an account's growth has
    the same bits computed with any slice of accounts (a shard, a block)."""
    from risk_core.margin.collateral import collateral_growth

    rng = np.random.default_rng(11)
    value = rng.lognormal(10, 2, (800, 5)) * (rng.random((800, 5)) < 0.7)
    moves = rng.normal(0, 0.2, (5, 64))
    whole = collateral_growth(value, moves, 0.1)
    for start, stop in ((0, 1), (3, 250), (250, 251), (251, 800), (17, 613)):
        assert np.array_equal(collateral_growth(value[start:stop], moves, 0.1), whole[start:stop])
    # and it is the defined quantity: 1 + sum_j value_j * move_j / sum_j value_j, floored
    today = value.sum(axis=1)
    assert (today == 0).any()  # accounts without collateral grow by 1
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (today[:, None] + value @ moves) / today[:, None]
    ref = np.maximum(np.where(today[:, None] > 0, ratio, 1.0), 0.1)
    np.testing.assert_allclose(whole, ref, rtol=1e-12)
