"""Run rule suites with Great Expectations on pandas views of Polars frames.

GX has no Polars engine: each dataset is converted once to pandas (a fast copy) and
validated by an ephemeral context's checkpoint, which also writes the GX Data Docs site
(the audit artefact of the run) when a folder is given. GX is imported here, lazily: it
takes seconds to import.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

if TYPE_CHECKING:
    from quality.rules import Rule

SAMPLE = 5


def _expectation(rule: Rule) -> Any:
    import great_expectations.expectations as gxe

    meta = {"check": rule.check}
    if rule.kind == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(column=rule.column, meta=meta)
    if rule.kind == "unique":
        return gxe.ExpectColumnValuesToBeUnique(column=rule.column, meta=meta)
    if rule.kind == "compound_unique":
        return gxe.ExpectCompoundColumnsToBeUnique(column_list=rule.column.split(","), meta=meta)
    if rule.kind == "in_set":
        return gxe.ExpectColumnValuesToBeInSet(column=rule.column, meta=meta, **rule.options)
    if rule.kind == "between":
        return gxe.ExpectColumnValuesToBeBetween(column=rule.column, meta=meta, **rule.options)
    if rule.kind == "rows":
        return gxe.ExpectTableRowCountToBeBetween(meta=meta, **rule.options)
    if rule.kind == "flag":
        return gxe.ExpectColumnValuesToBeInSet(
            column=flag_column(rule), value_set=[True], meta=meta
        )
    raise ValueError(f"unknown rule kind {rule.kind}")


def flag_column(rule: Rule) -> str:
    return f"_ok_{FLAG_NAMES.get((rule.dataset, rule.check), rule.check)}"


#: (dataset, check) -> the ``_ok_`` column computed for it, where the names differ.
FLAG_NAMES = {
    ("instruments", "option_fields_present"): "option_fields",
    ("instruments", "future_expiry_present"): "future_expiry",
    ("instruments", "underlying_has_index"): "has_index",
    ("instruments", "instrument_has_mark"): "has_mark",
    ("marks", "iv_near_smile"): "near_smile",
    ("marks", "put_call_parity"): "parity",
}


def run_suites(
    frames: dict[str, pl.DataFrame], rules: list[Rule], data_docs_dir: Path | None
) -> tuple[dict[tuple[str, str], tuple[list[int], int]], Path | None]:
    """For every rule: (0-based sample rows failing, number of failing rows); and the
    Data Docs index page when written."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if data_docs_dir is not None:
        data_docs_dir.mkdir(parents=True, exist_ok=True)
        context.add_data_docs_site(
            site_name="landing_validation",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(data_docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    source = context.data_sources.add_pandas("landing")
    definitions = []
    batches: dict[str, Any] = {}
    for dataset in sorted({r.dataset for r in rules}):
        asset = source.add_dataframe_asset(dataset)
        batch = asset.add_batch_definition_whole_dataframe(f"{dataset}_all")
        suite = context.suites.add(gx.ExpectationSuite(name=dataset))
        for rule in rules:
            if rule.dataset == dataset:
                suite.add_expectation(_expectation(rule))
        definitions.append(
            context.validation_definitions.add(
                gx.ValidationDefinition(name=dataset, data=batch, suite=suite)
            )
        )
        batches[dataset] = frames[dataset].to_pandas()
    outcomes: dict[tuple[str, str], tuple[list[int], int]] = {}
    for definition in definitions:
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"landing_{definition.name}",
                validation_definitions=[definition],
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE},
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": batches[definition.name]})
        for validation in run.run_results.values():
            for r in validation.results:
                outcomes[(definition.name, r.expectation_config.meta["check"])] = _outcome(r)
    docs = None
    if data_docs_dir is not None:
        # once, after every suite: a docs action per checkpoint re-renders the whole site
        context.build_data_docs(site_names=["landing_validation"])
        docs = data_docs_dir / "index.html"
    return outcomes, docs


def _outcome(r: Any) -> tuple[list[int], int]:
    """(sample failing rows, failing row count) of one expectation's result."""
    info = r.result or {}
    if r.expectation_config.type == "expect_table_row_count_to_be_between":
        return [], 0 if r.success else 1
    n = int(info.get("unexpected_count") or 0)
    rows = [int(i) for i in info.get("partial_unexpected_index_list") or []]
    if not r.success and n == 0:
        n = 1  # failed without a row count (an exception inside GX): never hide it
    return rows, n
