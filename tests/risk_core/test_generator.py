"""The landing-zone generator: contract schemas, exact sizes, integrity, determinism,
no look-ahead, real history files, the strategy of each archetype, denser chains."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.cli import main
from risk_core.landing.generator import (
    MAX_POSITIONS_PER_ACCOUNT,
    NEAR_CALL_SHARE,
    _counts,
    generate_landing,
)
from risk_core.landing.generator_book import NAMES
from risk_core.landing.generator_market import MAX_IV
from risk_core.landing.reader import LandingData, read_landing
from risk_core.pricing import black76
from risk_core.pricing.implied_vol import implied_vol

DATE = dt.date(2026, 11, 20)


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(("accounts", "positions"), [(1, 1), (10, 3), (50, 700)])
def test_sizes_schema_and_integrity(tmp_path: Path, accounts: int, positions: int) -> None:
    out = generate_landing(tmp_path, DATE, accounts=accounts, positions=positions, seed=3)
    data = read_landing(tmp_path, DATE)  # typed with the contract's schemas, or fails
    assert data.positions.height == positions == out.rows["positions"]
    assert data.positions.select("account_id", "instrument_id").is_unique().all()
    assert (data.positions["quantity"] != 0).all()
    assert data.collateral["account_id"].n_unique() == accounts
    assert data.positions["instrument_id"].is_in(data.instruments["instrument_id"].implode()).all()
    assert data.instruments["instrument_id"].is_in(data.marks["instrument_id"].implode()).all()
    assets = data.index_prices["underlying"].implode()
    assert data.instruments["underlying"].is_in(assets).all()
    assert data.collateral["asset"].is_in(assets).all()
    snapshot = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    assert (data.instruments["expiry"].drop_nulls() > snapshot).all()
    assert data.price_history["date"].max() == DATE


def test_option_marks_reprice_from_mark_iv(tmp_path: Path) -> None:
    generate_landing(tmp_path, DATE, accounts=5, positions=20, seed=1)
    data = read_landing(tmp_path, DATE)
    options = (
        data.instruments.filter(pl.col("kind") == "option")
        .join(data.marks, on="instrument_id")
        .filter(pl.col("mark_iv").is_not_null())
    )
    t = (options["expiry"] - dt.datetime(2026, 11, 20, tzinfo=dt.UTC)).dt.total_seconds() / (
        365 * 86400
    )
    usd = black76.price(
        options["underlying_price"].to_numpy(),
        options["strike"].to_numpy(),
        t.to_numpy(),
        options["mark_iv"].to_numpy(),
        (options["option_type"] == "C").to_numpy(),
    )
    inverse = (options["settlement"] == "inverse").to_numpy()
    expected = np.where(inverse, usd / options["underlying_price"].to_numpy(), usd)
    np.testing.assert_allclose(options["mark_price"].to_numpy(), expected, rtol=1e-12)
    assert options.height > 1_000  # full chains: 8+ expiries per underlying
    per = (
        data.instruments.filter(pl.col("kind") == "option")
        .group_by("underlying")
        .agg(pl.col("expiry").n_unique())
    )
    assert (per["expiry"] >= 8).all()


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    generate_landing(tmp_path / "a", DATE, accounts=20, positions=150, seed=5)
    generate_landing(tmp_path / "b", DATE, accounts=20, positions=150, seed=5)
    generate_landing(tmp_path / "c", DATE, accounts=20, positions=150, seed=6)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_history_extends_without_rewriting_the_past(tmp_path: Path) -> None:
    generate_landing(tmp_path / "d0", DATE, accounts=2, positions=2, seed=9)
    generate_landing(tmp_path / "d1", DATE + dt.timedelta(days=1), accounts=2, positions=2, seed=9)
    h0 = read_landing(tmp_path / "d0", DATE).price_history
    h1 = read_landing(tmp_path / "d1", DATE + dt.timedelta(days=1)).price_history
    assert h1.filter(pl.col("date") <= DATE).equals(h0)
    assert h1["date"].max() == DATE + dt.timedelta(days=1)


def test_archetypes_of_a_medium_book(tmp_path: Path) -> None:
    out = generate_landing(tmp_path, DATE, accounts=300, positions=3_000, seed=2)
    for kind in (
        "market_maker",
        "covered_call",
        "put_seller",
        "vertical_spread",
        "calendar_spread",
        "directional",
        "basis",
        "box",
    ):
        assert out.archetypes.get(kind, 0) > 0, kind
    data = read_landing(tmp_path, DATE)
    assert set(data.collateral["asset"]) >= {"BTC", "USDC"}


def test_real_history_file_sets_the_spot_level(tmp_path: Path, shared_data: Path) -> None:
    date = dt.date(2020, 3, 13)
    generate_landing(
        tmp_path,
        date,
        accounts=3,
        positions=10,
        seed=1,
        history_files=[shared_data / "prices" / "BTC-USD.csv"],
    )
    data = read_landing(tmp_path, date)
    index = dict(data.index_prices.iter_rows())
    assert index["BTC"] == pytest.approx(4830.0, rel=0.01)  # stored close of 2020-03-13
    btc = data.price_history.filter(pl.col("underlying") == "BTC")
    assert btc["date"].max() == date and btc["date"].min() == dt.date(2010, 8, 16)


# --- the bulk book: exact sizes, strategy shapes, determinism, denser chains -------------


def _read(folder: Path, date: dt.date = DATE) -> LandingData:
    return read_landing(folder, date)


@pytest.mark.parametrize(
    ("accounts", "positions"),
    [(7, 7), (10, 4), (40, 121), (300, 3_001), (3, 3 * MAX_POSITIONS_PER_ACCOUNT)],
)
def test_exact_count_unique_and_every_account_served(
    tmp_path: Path, accounts: int, positions: int
) -> None:
    out = generate_landing(tmp_path, DATE, accounts=accounts, positions=positions, seed=7)
    data = _read(tmp_path)
    pos = data.positions
    assert pos.height == positions == out.rows["positions"]
    assert pos.select("account_id", "instrument_id").is_unique().all()
    assert (pos["quantity"] != 0).all() and pos["quantity"].is_finite().all()
    per = pos.group_by("account_id").len()
    assert per.height == min(accounts, positions)  # at least one each while positions last
    assert per["len"].max() <= MAX_POSITIONS_PER_ACCOUNT
    if positions <= accounts:  # one position each, the first accounts first
        assert sorted(per["account_id"]) == [f"ACC{a + 1:06d}" for a in range(positions)]
    assert data.collateral["account_id"].n_unique() == accounts
    assert set(out.account_archetype) == {f"ACC{a + 1:06d}" for a in range(accounts)}
    assert sum(out.archetypes.values()) == accounts


def test_refuses_sizes_it_cannot_fill(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="need at least 4 accounts"):
        generate_landing(tmp_path, DATE, accounts=3, positions=3 * MAX_POSITIONS_PER_ACCOUNT + 1)
    with pytest.raises(ValueError, match="at least 1"):
        generate_landing(tmp_path, DATE, accounts=0, positions=5)
    early = dt.date(2016, 6, 1)  # only BTC is listed: fewer instruments than the cap
    listed = generate_landing(tmp_path, early, accounts=1, positions=1, seed=1).rows["instruments"]
    assert listed < MAX_POSITIONS_PER_ACCOUNT
    generate_landing(tmp_path, early, accounts=2, positions=2 * listed, seed=1)
    pos = _read(tmp_path, early).positions
    assert pos.height == 2 * listed and pos.select("account_id", "instrument_id").is_unique().all()
    with pytest.raises(ValueError, match=f"the market lists {listed:,} instruments"):
        generate_landing(tmp_path, early, accounts=2, positions=2 * listed + 1, seed=1)


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> tuple[LandingData, pl.DataFrame]:
    """A book of 300 accounts, and its positions with instrument columns, archetype and
    the options' unit delta (coins per contract, from the marks)."""
    folder = tmp_path_factory.mktemp("medium")
    out = generate_landing(folder, DATE, accounts=300, positions=3_000, seed=2)
    data = _read(folder)
    opts = data.instruments.filter(pl.col("kind") == "option").join(data.marks, on="instrument_id")
    t = (opts["expiry"] - dt.datetime(2026, 11, 20, tzinfo=dt.UTC)).dt.total_seconds().to_numpy()
    t = t / (365 * 86400)
    f, k = opts["underlying_price"].to_numpy(), opts["strike"].to_numpy()
    call = (opts["option_type"] == "C").to_numpy()
    usd = opts["mark_price"].to_numpy() * np.where(opts["settlement"] == "inverse", f, 1.0)
    iv = np.array(opts["mark_iv"].fill_null(np.nan).to_numpy())  # a writable copy
    missing = np.isnan(iv)
    iv[missing] = implied_vol(usd[missing], f[missing], k[missing], t[missing], call[missing]).vol
    delta = pl.DataFrame(
        {"instrument_id": opts["instrument_id"], "delta": black76.greeks(f, k, t, iv, call).delta}
    )
    book = (
        data.positions.join(data.instruments, on="instrument_id")
        .join(data.index_prices.rename({"underlying": "u"}), left_on="underlying", right_on="u")
        .join(delta, on="instrument_id", how="left")
        .with_columns(pl.col("account_id").replace_strict(out.account_archetype).alias("arch"))
    )
    return data, book


def _accounts(book: pl.DataFrame, archetype: str) -> list[pl.DataFrame]:
    accounts = book.filter(pl.col("arch") == archetype).partition_by("account_id")
    assert len(accounts) >= 5, archetype
    return accounts


def test_market_makers_hold_many_options_and_a_perpetual_delta_hedge(medium) -> None:  # type: ignore[no-untyped-def]
    _, book = medium
    for acc in _accounts(book, "market_maker"):
        options = acc.filter(pl.col("kind") == "option")
        perp = acc.filter(pl.col("kind") == "perpetual")
        assert options.height == acc.height - 1 >= 20
        assert perp.height == 1 and options["underlying"].n_unique() == 1
        assert perp["underlying"][0] == options["underlying"][0]
        option_delta = float((options["quantity"] * options["delta"]).sum())  # coins
        q, size, index = perp.select("quantity", "contract_size", "index_price").row(0)
        perp_delta = q * size / index if perp["contract_unit"][0] == "usd" else q * size
        contract = size / index if perp["contract_unit"][0] == "usd" else 0.1
        assert abs(option_delta + perp_delta) <= contract + 1e-6 * abs(option_delta)


def test_box_spreads_have_four_legs_of_one_expiry(medium) -> None:  # type: ignore[no-untyped-def]
    _, book = medium
    for acc in _accounts(book, "box"):
        legs = {
            (u, e, k, t): q
            for u, e, k, t, q in acc.filter(pl.col("kind") == "option")
            .select("underlying", "expiry", "strike", "option_type", "quantity")
            .iter_rows()
        }
        boxes = [
            (u, e, k1, k2)
            for (u, e, k1, t1), q in legs.items()
            for (u2, e2, k2, t2), q2 in legs.items()
            if (u, e, t1, t2) == (u2, e2, "C", "C")
            and k1 < k2
            and q > 0
            and q2 == -q
            and legs.get((u, e, k1, "P")) == -q
            and legs.get((u, e, k2, "P")) == q
        ]
        assert len(boxes) == 1, acc


def test_basis_is_long_spot_short_the_longest_futures(medium) -> None:  # type: ignore[no-untyped-def]
    data, book = medium
    for acc in _accounts(book, "basis"):
        spot = acc.filter(pl.col("kind") == "spot")
        assert spot.height == 1 and spot["quantity"][0] > 0
        coins, u = spot["quantity"][0], spot["underlying"][0]
        listed = data.instruments.filter((pl.col("kind") == "future") & (pl.col("underlying") == u))
        longest = listed.sort("expiry")["instrument_id"].tail(2)
        hedges = acc.filter(pl.col("instrument_id").is_in(longest.implode()))
        assert hedges.height == 2 and (hedges["quantity"] < 0).all()
        one_contract = hedges["contract_size"] / hedges["index_price"]  # coins
        hedged = -hedges["quantity"] * one_contract
        assert ((hedged - coins).abs() <= 0.5 * one_contract + 1e-12).all()


def test_option_sellers_spreads_and_calendars(medium) -> None:  # type: ignore[no-untyped-def]
    data, book = medium
    for kind, option_type, band in (
        ("covered_call", "C", (0.15, 0.40)),
        ("put_seller", "P", (0.10, 0.35)),
    ):
        in_band = []
        for acc in _accounts(book, kind):
            assert (acc["option_type"] == option_type).all() and (acc["quantity"] < 0).all()
            assert acc["underlying"].n_unique() == 1 and acc["expiry"].is_unique().all()
            in_band.append(acc["delta"].abs().is_between(*band).all())
            if kind == "covered_call":
                held = data.collateral.filter(pl.col("account_id") == acc["account_id"][0])
                assert acc["underlying"][0] in set(held["asset"]) <= {"BTC", "ETH"}
        assert np.mean(in_band) >= 0.9, kind
    for acc in _accounts(book, "vertical_spread"):
        calls = acc.filter(pl.col("option_type") == "C")
        spreads = calls.join(calls, on=["underlying", "expiry"], suffix="_2").filter(
            (pl.col("strike_2") > pl.col("strike"))
            & (pl.col("quantity") > 0)
            & (pl.col("quantity_2") == -pl.col("quantity"))
        )
        assert spreads.height >= acc.height // 2
    for acc in _accounts(book, "calendar_spread"):
        calls = acc.filter(pl.col("option_type") == "C")
        calendars = calls.join(calls, on="underlying", suffix="_far").filter(
            (pl.col("expiry_far") > pl.col("expiry"))
            & (pl.col("quantity") < 0)
            & (pl.col("quantity_far") == -pl.col("quantity"))
            & ((pl.col("strike_far") / pl.col("strike") - 1).abs() < 0.05)
        )
        assert calendars.height >= 1
    directional = book.filter(pl.col("arch") == "directional")
    assert set(directional["kind"]) == {"perpetual", "future", "option"}


def test_about_near_call_share_of_accounts_near_their_rough_margin(tmp_path: Path) -> None:
    """Collateral value / rough margin (the module's heuristic) within 0.9-1.3: the
    NEAR_CALL_SHARE accounts plus the lognormal's 3 % tail there."""
    out = generate_landing(tmp_path, DATE, accounts=2_000, positions=10_000, seed=4)
    data = _read(tmp_path)
    index = data.index_prices.rename({"underlying": "u"})
    rough = (
        data.positions.join(data.instruments, on="instrument_id")
        .join(index, left_on="underlying", right_on="u")
        .with_columns(
            pl.when(pl.col("kind") == "option")
            .then(0.15 * pl.col("index_price") * (-pl.col("quantity")).clip(lower_bound=0))
            .when(pl.col("contract_unit") == "usd")
            .then(0.10 * pl.col("quantity").abs() * pl.col("contract_size"))
            .when(pl.col("kind") == "spot")
            .then(0.0)
            .otherwise(0.10 * pl.col("quantity").abs() * pl.col("index_price"))
            .alias("need")
        )
        .group_by("account_id")
        .agg(pl.col("need").sum())
    )
    value = (
        data.collateral.with_columns(pl.col("asset").replace({"USDC": "USD", "USDT": "USD"}))
        .join(
            index.vstack(pl.DataFrame({"u": ["USD"], "index_price": [1.0]})),
            left_on="asset",
            right_on="u",
        )
        .group_by("account_id")
        .agg((pl.col("amount") * pl.col("index_price")).sum().alias("value"))
    )
    kinds = pl.DataFrame(
        {"account_id": list(out.account_archetype), "arch": list(out.account_archetype.values())}
    )
    ratio = (
        rough.join(value, on="account_id")
        .join(kinds, on="account_id")
        .filter((pl.col("arch") != "covered_call") & (pl.col("value") > 1_001.0))
        .select(pl.col("value") / pl.col("need"))
        .to_series()
    )
    assert ratio.len() > 1_000
    near = float(ratio.is_between(0.9 - 1e-6, 1.3 + 1e-6).mean())
    assert NEAR_CALL_SHARE < near < NEAR_CALL_SHARE + 0.08


def test_byte_identical_whatever_the_hash_seed(tmp_path: Path) -> None:
    """Two processes with different string hashing write the same bytes (parquet)."""
    code = (
        "import datetime as dt, pathlib, sys;"
        "from risk_core.landing.generator import generate_landing;"
        "generate_landing(pathlib.Path(sys.argv[1]), dt.date(2026, 11, 20), accounts=60,"
        " positions=1_500, seed=3, file_format='parquet', strikes_scale=1.3)"
    )
    for name, hash_seed in (("a", "1"), ("b", "2")):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], env=env, check=True)
    generate_landing(
        tmp_path / "c",
        DATE,
        accounts=60,
        positions=1_500,
        seed=3,
        file_format="parquet",
        strikes_scale=1.3,
    )
    assert len(_digest(tmp_path / "a")) == 6
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") == _digest(tmp_path / "c")


def test_strikes_scale_lists_denser_chains(tmp_path: Path) -> None:
    default = generate_landing(tmp_path / "d", DATE, accounts=5, positions=50, seed=1)
    generate_landing(tmp_path / "s", DATE, accounts=5, positions=50, seed=1, strikes_scale=1.0)
    dense = generate_landing(
        tmp_path / "x", DATE, accounts=5, positions=50, seed=1, strikes_scale=1.6
    )
    assert _digest(tmp_path / "d") == _digest(tmp_path / "s")
    assert 1_700 <= default.rows["instruments"] <= 2_000
    assert 2_800 <= dense.rows["instruments"] <= 3_300
    per_expiry = (
        _read(tmp_path / "x")
        .instruments.filter(pl.col("kind") == "option")
        .group_by("underlying", "expiry")
        .agg(pl.col("strike").n_unique())
    )
    base = (
        _read(tmp_path / "d")
        .instruments.filter(pl.col("kind") == "option")
        .group_by("underlying", "expiry")
        .agg(pl.col("strike").n_unique())
    )
    both = per_expiry.join(base, on=["underlying", "expiry"], suffix="_base")
    assert both.height == base.height and (both["strike"] > both["strike_base"]).all()
    with pytest.raises(ValueError, match="strikes_scale"):
        generate_landing(tmp_path / "z", DATE, accounts=1, positions=1, strikes_scale=0.0)


def test_cli_generate_strikes_scale(tmp_path: Path) -> None:
    args = ["generate", "--date", "2026-11-20", "--accounts", "2", "--positions", "4"]
    assert main([*args, "--out", str(tmp_path / "default")]) == 0
    assert main([*args, "--out", str(tmp_path / "dense"), "--strikes-scale", "1.6"]) == 0
    default = _read(tmp_path / "default").instruments.height
    assert _read(tmp_path / "dense").instruments.height > 1.4 * default
    assert main([*args, "--out", str(tmp_path / "bad"), "--strikes-scale", "-1"]) == 2
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("positions", [1, 3, 4, 5, 100, 1_000, 1_199, 1_200])
def test_counts_by_archetype_weight_within_the_cap(positions: int) -> None:
    """Positions per account before the book is drawn: exact total, at least one each
    while positions last, the market maker's book about 12 times the others', the cap
    respected by moving the excess to accounts with room."""
    kinds = np.array([NAMES.index(k) for k in ("directional", "market_maker", "box", "basis")])
    counts = _counts(4, positions, kinds, cap=300)
    assert counts.sum() == positions and counts.max() <= 300
    expected_min = np.minimum(1, positions - np.arange(4)).clip(0)  # 1, 1, 1, 1 or 1.., 0..
    assert (counts >= expected_min).all()
    if positions < 4:
        assert (counts == expected_min).all()
    elif positions <= 300:
        assert counts[1] >= 10 * (counts[0] - 1)


def test_smile_capped_at_the_contracts_largest_mark_iv(tmp_path: Path) -> None:
    """Far wings of long expiries: the smile reached 9.2 here before the cap (the landing
    contract accepts mark_iv in (0, 5])."""
    date = dt.date(2026, 10, 11)
    generate_landing(tmp_path, date, accounts=2, positions=4, seed=15)
    iv = _read(tmp_path, date).marks["mark_iv"].drop_nulls()
    assert iv.min() > 0 and iv.max() == MAX_IV == 5.0
