"""The landing-zone generator: contract schemas, exact sizes, integrity, determinism,
no look-ahead, real history files."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from risk_core.landing.generator import generate_landing
from risk_core.landing.reader import read_landing
from risk_core.pricing import black76

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
