"""The landing reader: typed frames, every row kept, clean errors naming file, column,
rule and rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from risk_core.landing.reader import LandingError, read_dataset, read_landing
from risk_core.landing.schemas import INSTRUMENTS, POSITIONS, PRICE_HISTORY

DATE = dt.date(2026, 11, 20)
HEADER = "account_id,instrument_id,quantity\n"


def _write(tmp_path: Path, text: str | bytes, name: str = "positions.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_reads_every_row_typed(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + 'A,BTC-PERPETUAL,10\nB,"x\'; drop table t;--",-2.5\r\n')
    frame = read_dataset(path, POSITIONS)
    assert frame.schema == POSITIONS.schema
    assert frame["instrument_id"].to_list() == ["BTC-PERPETUAL", "x'; drop table t;--"]
    assert frame["quantity"].to_list() == [10.0, -2.5]


def test_header_only_is_zero_rows_and_bom_is_ignored(tmp_path: Path) -> None:
    assert read_dataset(_write(tmp_path, "\ufeff" + HEADER), POSITIONS).height == 0


@pytest.mark.parametrize("bad", ["abc", "NaN", "inf", "-inf", "1e309"])
def test_bad_numbers_name_file_column_and_row(tmp_path: Path, bad: str) -> None:
    path = _write(tmp_path, HEADER + "A,X,1\nB,Y,2\nC,Z," + bad + "\n")
    with pytest.raises(LandingError) as err:
        read_dataset(path, POSITIONS)
    message = str(err.value)
    assert "positions.csv" in message and "quantity" in message and "3" in message
    assert err.value.rows == [3]


def test_missing_required_value(tmp_path: Path) -> None:
    with pytest.raises(LandingError, match=r"required value is empty.*account_id.*row"):
        read_dataset(_write(tmp_path, HEADER + ",X,1\n"), POSITIONS)


def test_wrong_delimiter_and_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(LandingError, match="not look comma-separated"):
        read_dataset(_write(tmp_path, "account_id;instrument_id;quantity\nA;X;1\n"), POSITIONS)
    with pytest.raises(LandingError, match="missing column"):
        read_dataset(_write(tmp_path, "account_id,quantity\nA,1\n"), POSITIONS)


def test_empty_file_and_bad_timestamp(tmp_path: Path) -> None:
    with pytest.raises(LandingError):
        read_dataset(_write(tmp_path, ""), POSITIONS)
    header = ",".join(INSTRUMENTS.columns) + "\n"
    row = "BTC-X,deribit,future,BTC,inverse,10,usd,not-a-date,,\n"
    with pytest.raises(LandingError, match="expiry"):
        read_dataset(_write(tmp_path, header + row, "instruments.csv"), INSTRUMENTS)


def test_parquet_with_wrong_type(tmp_path: Path) -> None:
    path = tmp_path / "positions.parquet"
    pl.DataFrame({"account_id": ["A"], "instrument_id": ["X"], "quantity": ["1.5"]}).write_parquet(
        path
    )
    assert read_dataset(path, POSITIONS)["quantity"].to_list() == [1.5]


def test_missing_and_ambiguous_files(tmp_path: Path) -> None:
    with pytest.raises(LandingError, match="file missing"):
        read_landing(tmp_path, DATE)
    folder = tmp_path / DATE.isoformat()
    folder.mkdir()
    (folder / "instruments.csv").write_text("x\n")
    (folder / "instruments.parquet").write_text("x\n")
    with pytest.raises(LandingError, match="ambiguous"):
        read_landing(tmp_path, DATE)


def test_symlink_outside_the_landing_folder(tmp_path: Path) -> None:
    outside = _write(tmp_path, HEADER, "outside.csv")
    landing = tmp_path / "landing"
    folder = landing / DATE.isoformat()
    folder.mkdir(parents=True)
    (folder / "instruments.csv").symlink_to(outside)
    with pytest.raises(LandingError, match="outside the landing folder"):
        read_landing(landing, DATE)


def test_inputs_hash_ignores_history_after_the_date_only(tmp_path: Path) -> None:
    """The reference history grows every day: rows after D change nothing of D's hash
    (so a resumed backfill still knows D is done); a row up to D, or a daily file,
    does; the same rows in Parquet hash alike; the run records the same hash."""
    from risk_core.landing.generator import generate_landing
    from risk_core.landing.reader import landing_inputs_sha256

    generate_landing(tmp_path, DATE, accounts=5, positions=20, seed=2)
    before = landing_inputs_sha256(tmp_path, DATE)
    assert read_landing(tmp_path, DATE).inputs_sha256() == before
    history_file = tmp_path / "reference" / "price_history.csv"
    history = pl.read_csv(history_file, infer_schema=False)
    last = history.filter(pl.col("date") == history["date"].max())
    later = last.with_columns(pl.lit((DATE + dt.timedelta(days=1)).isoformat()).alias("date"))
    pl.concat([later, history]).write_csv(history_file)  # a later row, first in the file
    assert landing_inputs_sha256(tmp_path, DATE) == before
    typed = read_dataset(history_file, PRICE_HISTORY)
    history_file.unlink()
    typed.write_parquet(tmp_path / "reference" / "price_history.parquet")
    assert landing_inputs_sha256(tmp_path, DATE) == before
    # a row up to the date changes the hash
    changed = typed.with_columns(
        pl.when(pl.col("date") == DATE).then(pl.col("close") * 1.01).otherwise(pl.col("close"))
    )
    changed.write_parquet(tmp_path / "reference" / "price_history.parquet")
    assert landing_inputs_sha256(tmp_path, DATE) != before
