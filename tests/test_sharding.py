"""Account sharding: every position in exactly one shard, and sharded results identical
to unsharded ones, bit for bit, per model (both rulesets) and end to end through Dagster's
multiprocess executor into the warehouse."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from risk_core import eod, outputs
from risk_core.landing.generator import generate_landing
from risk_core.landing.reader import read_landing
from risk_core.margin.base import MarginInputs
from risk_core.ruleset import load_ruleset
from risk_core.sharding import ShardingError, merge_results, shard_bounds, shard_inputs

DATE = dt.date(2026, 11, 20)
#: columns that name the run rather than its results
RUN_IDENTITY = ("run_id", "started_at", "finished_at")


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shard-landing")
    generate_landing(out, DATE, accounts=70, positions=1_400, seed=5)
    return out


@pytest.fixture(scope="module")
def inputs(landing: Path) -> MarginInputs:
    data = read_landing(landing, DATE)
    return eod.margin_inputs(data, eod.instrument_table(data))


def test_bounds_cover_every_account_once_and_balance_work() -> None:
    rng = np.random.default_rng(3)
    work = rng.integers(1, 400, size=1_000)
    for shards in (1, 2, 3, 8, 999, 1_000, 5_000):
        bounds = shard_bounds(work, shards)
        assert bounds[0][0] == 0 and bounds[-1][1] == work.size
        assert all(a < b for a, b in bounds), "no empty shard"
        assert all(b1 == a2 for (_, b1), (a2, _) in itertools.pairwise(bounds))
        assert len(bounds) <= shards
    totals = [int(work[a:b].sum()) for a, b in shard_bounds(work, 4)]
    assert max(totals) - min(totals) <= 2 * int(work.max())  # within one account's work
    assert shard_bounds(np.array([], dtype=np.int64), 3) == []
    with pytest.raises(ShardingError):
        shard_bounds(work, 0)


@pytest.mark.parametrize("shards", [2, 3, 7, 500])
def test_every_position_and_account_in_exactly_one_shard(inputs: MarginInputs, shards: int) -> None:
    parts = shard_inputs(inputs, shards)
    assert len(parts) == min(shards, inputs.positions.n_accounts)
    accounts = [a for p in parts for a in p.positions.accounts]
    assert accounts == list(inputs.positions.accounts)
    positions = pl.concat([p.positions_frame for p in parts])
    assert positions.equals(inputs.positions_frame)
    collateral = pl.concat([p.collateral for p in parts])
    assert collateral.equals(inputs.collateral)
    for p in parts:
        assert set(p.positions_frame["account_id"]) <= set(p.positions.accounts)
        assert set(p.collateral["account_id"]) <= set(p.positions.accounts)
        # the shard's matrix row i is the account p.positions.accounts[i]
        dense = p.positions.matrix.toarray()
        for row, code, q in zip(
            p.positions.account_code,
            p.positions.instrument_code,
            p.positions_frame["quantity"].to_numpy(),
            strict=True,
        ):
            assert dense[row, code] == q


@pytest.mark.parametrize("ruleset", ["cross-margin", "deribit-spm"])
def test_sharded_models_are_bit_identical(inputs: MarginInputs, ruleset: str) -> None:
    rules = load_ruleset(ruleset)
    whole = eod.margin_tables(eod.run_models(inputs, rules), rules)
    for shards in (2, 5):
        parts = [eod.run_models(p, rules) for p in shard_inputs(inputs, shards)]
        merged = eod.margin_tables(merge_results(parts), rules)
        assert merged.margin_account.equals(whole.margin_account)
        assert merged.margin_component.equals(whole.margin_component)
        assert merged.contribution_usd.equals(whole.contribution_usd)


def _tables(url: str) -> dict[str, pl.DataFrame]:
    from pipelines.warehouse import Warehouse

    wh = Warehouse(url)
    out = {}
    for table in outputs.ALL_TABLES:
        frame = wh.read_table(table.name, DATE)
        out[table.name] = frame.drop([c for c in RUN_IDENTITY if c in frame.columns])
    return out


@pytest.mark.integration
@pytest.mark.slow
def test_sharded_multiprocess_run_publishes_identical_rows(landing: Path, tmp_path: Path) -> None:
    import os

    import dagster as dg

    from pipelines.runner import run_business_date

    urls = {}
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(
        str(home), overrides={"telemetry": {"enabled": False}}
    ) as instance:
        for label, shards, processes in (("single", 1, 1), ("sharded", 3, 2)):
            urls[label] = f"duckdb:///{tmp_path / label}.duckdb"
            outcome = run_business_date(
                DATE,
                landing_dir=str(landing),
                warehouse_url=urls[label],
                artefacts_dir=str(tmp_path / "art"),
                shards=shards,
                processes=processes,
                instance=instance,
            )
            assert outcome.success, outcome.errors
        # the sharded run did split: three shard steps, each in a process of its own
        steps = {
            e.step_key: e.dagster_event.pid
            for e in instance.all_logs(outcome.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
        }
    shard_steps = sorted(k for k in steps if "shard_margin[" in k)
    assert [k.split("[")[1] for k in shard_steps] == [f"shard_{i:04d}]" for i in range(3)]
    assert os.getpid() not in {steps[k] for k in shard_steps}
    single, sharded = _tables(urls["single"]), _tables(urls["sharded"])
    assert single["position_risk"].height == 1_400
    for name, frame in single.items():
        assert sharded[name].equals(frame), f"{name} differs between 1 and 3 shards"


def test_shards_computed_with_another_ruleset_are_refused(inputs: MarginInputs) -> None:
    """A ruleset file edited between the shards and the merge stops the run: the
    published rows would otherwise mix two rulesets under one ruleset_sha256."""
    import dagster as dg

    from assets.risk import ShardResult, merged_margin
    from pipelines.resources import RulesetSource

    ruleset = load_ruleset("cross-margin")
    results = eod.run_models(inputs, ruleset)
    context = dg.build_op_context(resources={"ruleset": RulesetSource(name="cross-margin")})
    merged = merged_margin(context, [ShardResult(ruleset.sha256, results)])
    assert merged.value.ruleset.sha256 == ruleset.sha256
    stale = ShardResult("0" * 64, results)
    with pytest.raises(ValueError, match="changed during the run"):
        merged_margin(context, [ShardResult(ruleset.sha256, results), stale])
