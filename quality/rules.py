"""The rules of every landing dataset, evaluated on the typed frames of a business date.

Each rule yields one :class:`~quality.report.CheckResult`: its name, severity, the number
of failing rows and a detail naming the column, the rule and up to five sample rows
(1-based data rows of the file, as the reader keeps file order). Errors block the
publication; warnings (suspicious but possible data) are only recorded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import polars as pl

from quality.report import CheckResult, ValidationReport
from risk_core.conventions import CONTRACT_UNITS, KINDS, OPTION_TYPES, SETTLEMENTS
from risk_core.landing.reader import LandingData
from risk_core.landing.schemas import BY_NAME

SAMPLE = 5
#: Day-over-day index move (relative) above which a warning is raised.
INDEX_MOVE_WARNING = 0.25
#: Absolute distance of an IV from its expiry's median IV above which a warning is raised.
IV_DISTANCE_WARNING = 1.0


def _result(
    data: LandingData,
    dataset: str,
    check: str,
    failing: pl.Series,
    frame: pl.DataFrame,
    column: str,
    rule: str,
    severity: str = "error",
) -> CheckResult:
    failing = failing.fill_null(False)  # null: not applicable (nulls have their own rules)
    n = int(failing.sum())
    path = str(data.files.get(dataset, dataset))
    if n == 0:
        return CheckResult(dataset, check, severity, True, 0, f"{column}: {rule}", path)  # type: ignore[arg-type]
    rows = (failing.arg_true() + 1).head(SAMPLE).to_list()
    values = frame.filter(failing).head(SAMPLE)
    samples = "; ".join(
        f"row {r}: " + ", ".join(f"{k}={v!r}" for k, v in zip(values.columns, vals, strict=True))
        for r, vals in zip(rows, values.iter_rows(), strict=False)
    )
    detail = f"{column}: {rule}; {n} row(s) fail, e.g. {samples}"
    return CheckResult(dataset, check, severity, False, n, detail, path)  # type: ignore[arg-type]


def _common(data: LandingData, name: str, frame: pl.DataFrame) -> Iterator[CheckResult]:
    dataset = BY_NAME[name]
    for column in dataset.required:
        yield _result(
            data,
            name,
            f"{column}_not_null",
            frame[column].is_null(),
            frame,
            column,
            "must not be empty",
        )
    key = list(dataset.key)
    yield _result(
        data,
        name,
        "key_unique",
        frame.select(key).is_duplicated(),
        frame,
        ",".join(key),
        "must be unique",
    )


def _instruments(data: LandingData) -> Iterator[CheckResult]:
    f = data.instruments
    yield _result(
        data,
        "instruments",
        "not_empty",
        pl.Series([f.height == 0]),
        f.head(1),
        "instrument_id",
        "the file must have at least one row",
    )
    for column, allowed in (
        ("kind", KINDS),
        ("settlement", SETTLEMENTS),
        ("contract_unit", CONTRACT_UNITS),
    ):
        yield _result(
            data,
            "instruments",
            f"{column}_in_set",
            ~f[column].is_in(list(allowed)),
            f,
            column,
            f"must be one of {', '.join(allowed)}",
        )
    yield _result(
        data,
        "instruments",
        "contract_size_positive",
        f["contract_size"] <= 0,
        f,
        "contract_size",
        "must be > 0",
    )
    option = f["kind"] == "option"
    yield _result(
        data,
        "instruments",
        "option_fields_present",
        option & (f["expiry"].is_null() | f["strike"].is_null() | f["option_type"].is_null()),
        f,
        "expiry,strike,option_type",
        "options need expiry, strike and option_type",
    )
    yield _result(
        data,
        "instruments",
        "option_type_in_set",
        option & ~f["option_type"].is_in(list(OPTION_TYPES)),
        f,
        "option_type",
        "must be C or P",
    )
    yield _result(
        data,
        "instruments",
        "strike_positive",
        option & (f["strike"] <= 0),
        f,
        "strike",
        "must be > 0",
    )
    yield _result(
        data,
        "instruments",
        "future_expiry_present",
        (f["kind"] == "future") & f["expiry"].is_null(),
        f,
        "expiry",
        "futures need an expiry",
    )
    yield _result(
        data,
        "instruments",
        "underlying_has_index",
        ~f["underlying"].is_in(data.index_prices["underlying"].implode()),
        f,
        "underlying",
        "must have an index price in index_prices",
    )
    yield _result(
        data,
        "instruments",
        "instrument_has_mark",
        ~f["instrument_id"].is_in(data.marks["instrument_id"].implode()),
        f,
        "instrument_id",
        "every instrument needs a mark in marks",
    )


def _marks(data: LandingData) -> Iterator[CheckResult]:
    f = data.marks
    yield _result(
        data,
        "marks",
        "mark_price_non_negative",
        f["mark_price"] < 0,
        f,
        "mark_price",
        "must be >= 0",
    )
    yield _result(
        data,
        "marks",
        "mark_iv_range",
        (f["mark_iv"] <= 0) | (f["mark_iv"] > 5),
        f,
        "mark_iv",
        "must be in (0, 5] when present",
    )
    yield _result(
        data,
        "marks",
        "underlying_price_positive",
        f["underlying_price"] <= 0,
        f,
        "underlying_price",
        "must be > 0",
    )
    yield _result(
        data,
        "marks",
        "instrument_exists",
        ~f["instrument_id"].is_in(data.instruments["instrument_id"].implode()),
        f,
        "instrument_id",
        "must exist in instruments",
    )


def _index_prices(data: LandingData) -> Iterator[CheckResult]:
    f = data.index_prices
    yield _result(
        data,
        "index_prices",
        "index_price_positive",
        f["index_price"] <= 0,
        f,
        "index_price",
        "must be > 0",
    )
    history = (
        data.price_history.sort("date")
        .group_by("underlying")
        .agg(pl.col("close").filter(pl.col("date") < data.business_date).last().alias("previous"))
    )
    joined = f.join(history, on="underlying", how="left")
    move = (joined["index_price"] / joined["previous"] - 1.0).abs()
    yield _result(
        data,
        "index_prices",
        "index_move_plausible",
        move > INDEX_MOVE_WARNING,
        joined,
        "index_price",
        f"moves more than {INDEX_MOVE_WARNING:.0%} from the last close",
        "warning",
    )


def _positions(data: LandingData) -> Iterator[CheckResult]:
    f = data.positions
    yield _result(
        data,
        "positions",
        "quantity_non_zero",
        f["quantity"] == 0,
        f,
        "quantity",
        "must be non-zero",
    )
    yield _result(
        data,
        "positions",
        "instrument_exists",
        ~f["instrument_id"].is_in(data.instruments["instrument_id"].implode()),
        f,
        "instrument_id",
        "must exist in instruments",
    )
    yield _result(
        data,
        "positions",
        "instrument_has_mark",
        ~f["instrument_id"].is_in(data.marks["instrument_id"].implode()),
        f,
        "instrument_id",
        "must have a mark in marks",
    )
    snapshot = dt.datetime.combine(data.business_date, dt.time(0), tzinfo=dt.UTC)
    expiry = f.join(
        data.instruments.select("instrument_id", "expiry"),
        on="instrument_id",
        how="left",
        maintain_order="left",
    )["expiry"]
    yield _result(
        data,
        "positions",
        "instrument_not_expired",
        expiry.is_not_null() & (expiry <= snapshot),
        f,
        "instrument_id",
        f"instrument expired at or before the snapshot {snapshot.isoformat()}",
    )


def _collateral(data: LandingData) -> Iterator[CheckResult]:
    f = data.collateral
    yield _result(
        data,
        "collateral",
        "asset_has_index",
        ~f["asset"].is_in(data.index_prices["underlying"].implode()),
        f,
        "asset",
        "must have an index price in index_prices",
    )


def _price_history(data: LandingData) -> Iterator[CheckResult]:
    f = data.price_history
    yield _result(
        data, "price_history", "close_positive", f["close"] <= 0, f, "close", "must be > 0"
    )
    needed = data.instruments["underlying"].unique()
    have = f["underlying"].unique().implode()
    missing = pl.DataFrame({"underlying": needed}).filter(~pl.col("underlying").is_in(have))
    yield _result(
        data,
        "price_history",
        "history_for_every_underlying",
        pl.Series([True] * missing.height, dtype=pl.Boolean),
        missing,
        "underlying",
        "every underlying needs price history up to the business date",
    )


def _option_smile(data: LandingData) -> Iterator[CheckResult]:
    """IVs far from their expiry's median (warning)."""
    options = data.marks.join(data.instruments, on="instrument_id", how="inner").filter(
        pl.col("kind") == "option"
    )
    median = pl.col("mark_iv").median().over("underlying", "expiry")
    far = options.select((pl.col("mark_iv") - median).abs() > IV_DISTANCE_WARNING).to_series()
    yield _result(
        data,
        "marks",
        "iv_near_smile",
        far,
        options.select("instrument_id", "mark_iv"),
        "mark_iv",
        f"more than {IV_DISTANCE_WARNING} from the expiry's median IV",
        "warning",
    )


def validate_landing(data: LandingData) -> ValidationReport:
    """Every rule on every dataset of the date."""
    results: list[CheckResult] = []
    for name, frame in data.frames().items():
        results.extend(_common(data, name, frame))
    for rules in (
        _instruments,
        _marks,
        _index_prices,
        _positions,
        _collateral,
        _price_history,
        _option_smile,
    ):
        results.extend(rules(data))
    return ValidationReport(data.business_date, tuple(results))
