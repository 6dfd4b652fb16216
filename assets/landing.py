"""The landing zone: its files as external assets, and the validated snapshot."""

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from assets.common import OWNERS, business_date
from assets.failpoints import failpoint
from assets.partitions import business_dates
from risk_core.landing.reader import LandingData, read_landing
from risk_core.landing.schemas import ALL_DATASETS

LANDING_FILES = [
    dg.AssetSpec(
        ["landing", d.name],
        description=f"Landing file `{'reference' if d.reference else '<date>'}/{d.name}` "
        "(.csv or .parquet), CONTRACT.md section 1. Written by upstream systems.",
        group_name="landing",
        kinds={"csv", "parquet"},
        owners=OWNERS,
    )
    for d in ALL_DATASETS
]

CHECKS = [
    dg.AssetCheckSpec(
        f"{d.name}_valid",
        asset="landing_snapshot",
        description=f"Great Expectations suite of `{d.name}`: schema, nulls, enumerations, "
        "ranges, keys and references. Blocking: an error stops every downstream asset.",
        blocking=True,
    )
    for d in ALL_DATASETS
]


@dataclass(frozen=True)
class ValidatedLanding:
    data: LandingData
    report: object  #: quality.ValidationReport
    started_at: dt.datetime
    landing_dir: str


@dg.asset(
    partitions_def=business_dates,
    deps=[spec.key for spec in LANDING_FILES],
    check_specs=CHECKS,
    required_resource_keys={"landing", "artefacts"},
    group_name="ingest",
    kinds={"polars", "great_expectations"},
    owners=OWNERS,
)
def landing_snapshot(context: dg.AssetExecutionContext):  # type: ignore[no-untyped-def]
    """Every landing dataset of the business date, typed, read whole (no row dropped),
    with the price history cut at the business date; validated by blocking checks."""
    from quality import validate_landing

    started_at = dt.datetime.now(dt.UTC)
    date = business_date(context)
    landing_dir = context.resources.landing.path()
    data = read_landing(landing_dir, date)
    docs_dir = context.resources.artefacts.folder("data_docs", date, context.run.run_id)
    report = validate_landing(data, docs_dir)
    failpoint("ingest")
    yield dg.Output(
        ValidatedLanding(data, report, started_at, str(landing_dir)),
        metadata={
            **{f"rows_{name}": dg.MetadataValue.int(f.height) for name, f in data.frames().items()},
            **{f"sha256_{name}": dg.MetadataValue.text(h) for name, h in data.sha256.items()},
            "inputs_sha256": dg.MetadataValue.text(data.inputs_sha256()),
            "data_docs": dg.MetadataValue.path(str(report.data_docs)),
            "warnings": dg.MetadataValue.int(len(report.warnings)),
        },
    )
    for dataset in ALL_DATASETS:
        errors = [r for r in report.errors if r.dataset == dataset.name]
        warnings = [r for r in report.warnings if r.dataset == dataset.name]
        yield dg.AssetCheckResult(
            check_name=f"{dataset.name}_valid",
            passed=not errors,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(f"{r.check}: {r.detail}" for r in errors)[:2000] or "passed",
            metadata={
                "failed_checks": dg.MetadataValue.int(len(errors)),
                "warnings": dg.MetadataValue.int(len(warnings)),
                "detail": dg.MetadataValue.md(
                    "\n".join(
                        f"- **{r.check}** ({r.severity}): {r.detail}" for r in errors + warnings
                    )
                    or "all expectations met"
                ),
            },
        )
