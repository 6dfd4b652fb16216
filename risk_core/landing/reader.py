"""Read the landing zone into typed Polars frames, or fail naming file, column and rows.

A dataset is ``<landing>/<YYYY-MM-DD>/<name>.csv`` or ``<name>.parquet`` (reference
datasets live in ``<landing>/reference/``). CSV files are read as text first and cast
column by column, so that a value that does not parse is reported with its row
numbers instead of silently becoming null. Rows are never dropped here: every row of
the file is in the returned frame, or the read fails.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from risk_core.landing.schemas import (
    COLLATERAL,
    DAILY_DATASETS,
    INDEX_PRICES,
    INSTRUMENTS,
    MARKS,
    POSITIONS,
    PRICE_HISTORY,
    Dataset,
)

EXTENSIONS = ("csv", "parquet")
#: How many offending rows a message shows.
SAMPLE_ROWS = 5


class LandingError(Exception):
    """Bad landing input, with the file, column, rule and offending rows (1-based data rows)."""

    def __init__(
        self,
        file: Path | str,
        rule: str,
        *,
        column: str | None = None,
        rows: Sequence[int] = (),
        n_rows: int | None = None,
        sample: Sequence[str] = (),
    ) -> None:
        self.file = str(file)
        self.rule = rule
        self.column = column
        self.rows = list(rows)
        self.n_rows = len(self.rows) if n_rows is None else n_rows
        self.sample = list(sample)
        super().__init__(self.message())

    def message(self) -> str:
        parts = [f"{self.file}: {self.rule}"]
        if self.column:
            parts.append(f"column {self.column!r}")
        if self.n_rows:
            shown = ", ".join(str(r) for r in self.rows[:SAMPLE_ROWS])
            more = f" (+{self.n_rows - SAMPLE_ROWS} more)" if self.n_rows > SAMPLE_ROWS else ""
            parts.append(f"{self.n_rows} row(s): {shown}{more}")
        if self.sample:
            parts.append("values: " + ", ".join(self.sample[:SAMPLE_ROWS]))
        return "; ".join(parts)


@dataclass(frozen=True)
class LandingData:
    """The typed datasets of one business date, and the SHA-256 of every file read."""

    business_date: dt.date
    instruments: pl.DataFrame
    marks: pl.DataFrame
    index_prices: pl.DataFrame
    positions: pl.DataFrame
    collateral: pl.DataFrame
    price_history: pl.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    #: per dataset, its file's SHA-256; the price history's: :func:`history_sha256`
    sha256: dict[str, str] = field(default_factory=dict)

    def frames(self) -> dict[str, pl.DataFrame]:
        return {
            "instruments": self.instruments,
            "marks": self.marks,
            "index_prices": self.index_prices,
            "positions": self.positions,
            "collateral": self.collateral,
            "price_history": self.price_history,
        }

    def inputs_sha256(self) -> str:
        """One hash over every input file's name and hash, in a fixed order."""
        return combined_sha256(self.sha256)


def combined_sha256(hashes: dict[str, str]) -> str:
    """One hash over dataset names and their files' hashes, in a fixed order."""
    digest = hashlib.sha256()
    for name in sorted(hashes):
        digest.update(f"{name}={hashes[name]}\n".encode())
    return digest.hexdigest()


def landing_inputs_sha256(landing_dir: Path, business_date: dt.date) -> str:
    """The ``inputs_sha256`` that :func:`read_landing` would record for the date: to tell
    whether a date's published run was made from exactly these inputs. Reads only the
    price history (its rows up to the date); the daily files are hashed as bytes."""
    landing_dir = Path(landing_dir)
    hashes = {
        d.name: file_sha256(find_dataset_file(landing_dir, business_date, d))
        for d in DAILY_DATASETS
    }
    path = find_dataset_file(landing_dir, business_date, PRICE_HISTORY)
    hashes[PRICE_HISTORY.name] = history_sha256(
        _history_up_to(read_dataset(path, PRICE_HISTORY), business_date)
    )
    return combined_sha256(hashes)


def _history_up_to(frame: pl.DataFrame, business_date: dt.date) -> pl.DataFrame:
    """The history a date may use: its rows up to the date, in a canonical order."""
    return frame.filter(pl.col("date") <= business_date).sort("underlying", "date")


def history_sha256(history: pl.DataFrame) -> str:
    """A hash of the history rows a date uses (not of the file: the reference file grows
    every day, and later rows change no result of the date), from a canonical CSV of
    them, so that the same rows in another file or format hash alike."""
    return hashlib.sha256(history.write_csv().encode()).hexdigest()


def dataset_folder(landing_dir: Path, business_date: dt.date, dataset: Dataset) -> Path:
    return landing_dir / ("reference" if dataset.reference else business_date.isoformat())


def find_dataset_file(landing_dir: Path, business_date: dt.date, dataset: Dataset) -> Path:
    """The one file of ``dataset`` for the date; an error if it is missing or ambiguous."""
    folder = dataset_folder(landing_dir, business_date, dataset)
    found = [folder / f"{dataset.name}.{ext}" for ext in EXTENSIONS]
    existing = [p for p in found if p.is_file()]
    if not existing:
        raise LandingError(folder / f"{dataset.name}.csv", "file missing (.csv or .parquet)")
    if len(existing) > 1:
        raise LandingError(existing[0], "both a .csv and a .parquet file: ambiguous")
    path = existing[0]
    if not path.resolve().is_relative_to(landing_dir.resolve()):
        raise LandingError(path, "file resolves outside the landing folder")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _row_numbers(mask: pl.Series) -> list[int]:
    return [int(i) + 1 for i in mask.arg_true().to_list()]


def _raw_frame(path: Path, dataset: Dataset) -> pl.DataFrame:
    """The file's columns as text (CSV) or as stored (Parquet); header checked."""
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(
                path,
                infer_schema=False,
                encoding="utf8-lossy",
                raise_if_empty=False,
            )
    except Exception as exc:  # the parser's own words name the problem
        raise LandingError(path, f"cannot be parsed: {exc}") from None
    # A UTF-8 byte order mark or stray spaces in the header are not part of the names.
    frame = frame.rename({c: c.lstrip("\ufeff").strip() for c in frame.columns})
    missing = [c for c in dataset.columns if c not in frame.columns]
    if missing:
        hint = ""
        if len(frame.columns) == 1 and any(sep in frame.columns[0] for sep in ";\t|"):
            hint = " (the file does not look comma-separated)"
        raise LandingError(path, f"missing column(s) {', '.join(missing)}{hint}", column=missing[0])
    return frame.select(list(dataset.columns))


#: ISO-8601 forms accepted for timestamps; a value without an offset is taken as UTC.
ZONED_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z")
NAIVE_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.fZ",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%MZ",
    "%Y-%m-%dT%H:%M",
)


def _parse_timestamps(text: pl.Series) -> pl.Series:
    """UTC timestamps from ISO-8601 text; null where no accepted form matches."""
    result = pl.Series(text.name, [None] * len(text), dtype=pl.Datetime("us", "UTC"))
    for fmt in ZONED_FORMATS:
        parsed = text.str.to_datetime(fmt, time_unit="us", strict=False)
        result = result.fill_null(parsed.dt.convert_time_zone("UTC"))
    for fmt in NAIVE_FORMATS:
        parsed = text.str.to_datetime(fmt, time_unit="us", strict=False)
        result = result.fill_null(parsed.dt.replace_time_zone("UTC"))
    date_only = text.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us"))
    return result.fill_null(date_only.dt.replace_time_zone("UTC"))


def _cast_column(path: Path, raw: pl.Series, target: pl.DataType) -> pl.Series:
    """Cast one column strictly: a non-empty value that does not parse is an error."""
    if raw.dtype == target:
        cast = raw
    elif raw.dtype == pl.String():
        text = raw.str.strip_chars()
        text = pl.Series(raw.name, text).replace("", None)
        if target == pl.Float64():
            cast = text.cast(pl.Float64, strict=False)
        elif target == pl.Date():
            cast = text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        elif isinstance(target, pl.Datetime):
            cast = _parse_timestamps(text)
        else:
            cast = text
        bad = text.is_not_null() & cast.is_null()
        if bad.any():
            raise LandingError(
                path,
                f"value is not a valid {target}",
                column=raw.name,
                rows=_row_numbers(bad),
                n_rows=int(bad.sum()),
                sample=[repr(v) for v in text.filter(bad).head(SAMPLE_ROWS).to_list()],
            )
        raw = text
    else:
        try:
            cast = raw.cast(target, strict=True)
        except Exception:
            raise LandingError(
                path, f"column type {raw.dtype} cannot be read as {target}", column=raw.name
            ) from None
    if target == pl.Float64():
        non_finite = cast.is_not_null() & ~cast.is_finite()
        if non_finite.any():
            raise LandingError(
                path,
                "value is not a finite number",
                column=raw.name,
                rows=_row_numbers(non_finite),
                n_rows=int(non_finite.sum()),
                sample=[repr(v) for v in raw.filter(non_finite).head(SAMPLE_ROWS).to_list()],
            )
    return cast.alias(raw.name)


def read_dataset(path: Path, dataset: Dataset) -> pl.DataFrame:
    """Read one landing file into the dataset's schema; raise :class:`LandingError`."""
    raw = _raw_frame(path, dataset)
    columns = [_cast_column(path, raw[name], dtype) for name, dtype in dataset.columns.items()]
    frame = pl.DataFrame(columns)
    for name in dataset.required:
        null = frame[name].is_null()
        if null.any():
            raise LandingError(
                path,
                "required value is empty",
                column=name,
                rows=_row_numbers(null),
                n_rows=int(null.sum()),
            )
    return frame


def read_landing(landing_dir: Path, business_date: dt.date) -> LandingData:
    """Read every dataset of the date; the price history only up to the business date."""
    landing_dir = Path(landing_dir)
    frames: dict[str, pl.DataFrame] = {}
    files: dict[str, Path] = {}
    hashes: dict[str, str] = {}
    for dataset in (*DAILY_DATASETS, PRICE_HISTORY):
        path = find_dataset_file(landing_dir, business_date, dataset)
        frames[dataset.name] = read_dataset(path, dataset)
        files[dataset.name] = path
        hashes[dataset.name] = file_sha256(path)
    history = _history_up_to(frames[PRICE_HISTORY.name], business_date)
    hashes[PRICE_HISTORY.name] = history_sha256(history)
    return LandingData(
        business_date=business_date,
        instruments=frames[INSTRUMENTS.name],
        marks=frames[MARKS.name],
        index_prices=frames[INDEX_PRICES.name],
        positions=frames[POSITIONS.name],
        collateral=frames[COLLATERAL.name],
        price_history=history,
        files=files,
        sha256=hashes,
    )
