"""Validation: a clean landing zone passes; each corruption is rejected with a message
naming file, column, rule and rows; random corruption never crashes or drops a row."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quality import validate_landing
from risk_core.landing.generator import generate_landing
from risk_core.landing.reader import LandingError, read_dataset, read_landing
from risk_core.landing.schemas import POSITIONS

DATE = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clean")
    generate_landing(folder, DATE, accounts=20, positions=200, seed=12)
    return folder


def _copy(clean: Path, tmp_path: Path) -> Path:
    target = tmp_path / "landing"
    shutil.copytree(clean, target)
    return target


def _edit(landing: Path, name: str, fn: Callable[[pl.DataFrame], pl.DataFrame]) -> None:
    path = landing / DATE.isoformat() / f"{name}.csv"
    frame = pl.read_csv(path, infer_schema=False)
    fn(frame).write_csv(path)


def test_clean_landing_passes(clean: Path, tmp_path: Path) -> None:
    report = validate_landing(read_landing(clean, DATE), tmp_path / "docs")
    assert report.errors == []
    assert report.data_docs is not None and report.data_docs.is_file()
    frame = report.to_frame("run")
    assert frame.height == len(report.results) > 40
    assert frame.select("dataset", "check").is_unique().all()


def _set(column: str, row: int, value: str | None) -> Callable[[pl.DataFrame], pl.DataFrame]:
    def fn(frame: pl.DataFrame) -> pl.DataFrame:
        values = frame[column].to_list()
        values[row] = value
        return frame.with_columns(pl.Series(column, values, dtype=pl.String))

    return fn


CORRUPTIONS = [
    ("positions", _set("quantity", 4, "0"), "positions", "quantity_non_zero", "row 5"),
    ("positions", _set("instrument_id", 2, "NOPE-1"), "positions", "instrument_exists", "row 3"),
    ("positions", lambda f: pl.concat([f, f.head(1)]), "positions", "key_unique", "row"),
    ("marks", _set("mark_iv", 7, "6.5"), "marks", "mark_iv_range", "row 8"),
    ("marks", _set("mark_price", 3, "-1"), "marks", "mark_price_non_negative", "row 4"),
    ("marks", lambda f: f.slice(1), "instruments", "instrument_has_mark", "row 1"),
    ("instruments", _set("kind", 5, "swap"), "instruments", "kind_in_set", "row 6"),
    (
        "instruments",
        _set("contract_size", 1, "0"),
        "instruments",
        "contract_size_positive",
        "row 2",
    ),
    (
        "index_prices",
        lambda f: f.filter(pl.col("underlying") != "USDT"),
        "collateral",
        "has_index",
        "asset",
    ),
    ("collateral", _set("asset", 0, "DOGE"), "collateral", "has_index", "row 1"),
]


@pytest.mark.parametrize(("name", "fn", "dataset", "check", "where"), CORRUPTIONS)
def test_corruption_is_named(
    clean: Path,
    tmp_path: Path,
    name: str,
    fn,
    dataset: str,  # type: ignore[no-untyped-def]
    check: str,
    where: str,
) -> None:
    landing = _copy(clean, tmp_path)
    _edit(landing, name, fn)
    report = validate_landing(read_landing(landing, DATE))
    failed = {(r.dataset, r.check): r for r in report.errors}
    assert (dataset, check) in failed, [(r.dataset, r.check) for r in report.errors]
    result = failed[(dataset, check)]
    assert where in result.detail and result.failed_rows >= 1
    assert result.file.endswith(f"{dataset}.csv")


def test_put_call_parity_break_is_a_warning(clean: Path, tmp_path: Path) -> None:
    landing = _copy(clean, tmp_path)
    marks = pl.read_csv(landing / DATE.isoformat() / "marks.csv", infer_schema=False)
    call = next(i for i in marks["instrument_id"] if i.startswith("BTC-") and i.endswith("-C"))

    def bump(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(
            pl.when(pl.col("instrument_id") == call)
            .then((pl.col("mark_price").cast(pl.Float64) + 0.05).cast(pl.String))
            .otherwise(pl.col("mark_price"))
            .alias("mark_price")
        )

    _edit(landing, "marks", bump)
    report = validate_landing(read_landing(landing, DATE))
    warned = {(r.dataset, r.check): r for r in report.warnings}
    assert ("marks", "put_call_parity") in warned and not report.errors
    assert call in warned[("marks", "put_call_parity")].detail


def test_expired_instrument_in_positions(clean: Path, tmp_path: Path) -> None:
    landing = _copy(clean, tmp_path)
    positions = pl.read_csv(landing / DATE.isoformat() / "positions.csv", infer_schema=False)
    used = positions["instrument_id"][0]

    def expire(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(
            pl.when(pl.col("instrument_id") == used)
            .then(pl.lit("2026-11-19T08:00:00Z"))
            .otherwise(pl.col("expiry"))
            .alias("expiry")
        )

    _edit(landing, "instruments", expire)
    report = validate_landing(read_landing(landing, DATE))
    assert ("positions", "not_expired") in {(r.dataset, r.check) for r in report.errors}


def test_cli_rejects_bad_input_cleanly(
    clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    landing = _copy(clean, tmp_path)
    _edit(landing, "marks", _set("mark_iv", 7, "6.5"))
    code = main(
        [
            "run",
            "--date",
            DATE.isoformat(),
            "--landing",
            str(landing),
            "--warehouse",
            f"duckdb:///{tmp_path / 'wh.duckdb'}",
            "--artefacts",
            str(tmp_path / "art"),
        ]
    )
    out = capsys.readouterr()
    text = out.out + out.err
    assert code == 1
    assert "marks_valid" in text and "mark_iv" in text and "row 8" in text
    assert "Traceback" not in text


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_corruption_never_crashes_or_drops_rows(clean: Path, tmp_path: Path, data) -> None:  # type: ignore[no-untyped-def]
    source = (clean / DATE.isoformat() / "positions.csv").read_bytes()
    lines = source.split(b"\n")
    action = data.draw(st.sampled_from(["flip", "delete", "duplicate", "cell"]))
    i = data.draw(st.integers(1, len(lines) - 2))
    if action == "flip":
        raw = bytearray(source)
        j = data.draw(st.integers(0, len(raw) - 1))
        raw[j] = data.draw(st.integers(0, 255))
        corrupted = bytes(raw)
    elif action == "delete":
        corrupted = b"\n".join(lines[:i] + lines[i + 1 :])
    elif action == "duplicate":
        corrupted = b"\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
    else:
        cells = lines[i].split(b",")
        k = data.draw(st.integers(0, len(cells) - 1))
        cells[k] = data.draw(st.sampled_from([b"", b"NaN", b"inf", b"1e309", b"x;y", b"'", b"-0"]))
        corrupted = b"\n".join([*lines[:i], b",".join(cells), *lines[i + 1 :]])
    path = tmp_path / "positions.csv"
    path.write_bytes(corrupted)
    expected_rows = len([x for x in corrupted.split(b"\n")[1:] if x.strip()])
    try:
        frame = read_dataset(path, POSITIONS)
    except LandingError as err:
        assert "positions.csv" in str(err)
        return
    # Read without error: every non-blank data line is a row, none dropped.
    if b'"' not in corrupted and b"\r" not in corrupted:
        assert frame.height == expected_rows
    assert frame["quantity"].is_finite().all()
