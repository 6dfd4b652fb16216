"""Resources: where the landing zone is, which ruleset, which warehouse, where artefacts go.

Every setting comes from the command line or the environment (``MARGIN_LANDING_DIR``,
``MARGIN_WAREHOUSE_URL``, ``MARGIN_RULESET``, ``MARGIN_ARTEFACTS_DIR``,
``MARGIN_SHARDS``); a warehouse URL
that carries a password is read through Dagster's ``EnvVar`` so that it never appears in
the UI or in logs.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from pipelines.warehouse import Warehouse
from risk_core.ruleset import DEFAULT_RULESET, Ruleset, load_ruleset

DEFAULT_WAREHOUSE_URL = "duckdb:///margin_eod.duckdb"
DEFAULT_LANDING_DIR = "landing"
DEFAULT_ARTEFACTS_DIR = "artefacts"


class LandingZone(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The landing folder: ``<landing_dir>/<YYYY-MM-DD>/`` and ``<landing_dir>/reference/``."""

    landing_dir: str

    def path(self) -> Path:
        return Path(self.landing_dir).resolve()


class RulesetSource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """A shipped ruleset by name (``cross-margin``, ``deribit-spm``) or a ruleset file path."""

    name: str = DEFAULT_RULESET

    def load(self) -> Ruleset:
        return load_ruleset(self.name)


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The SQL warehouse (any SQLAlchemy URL; DuckDB file by default)."""

    url: str
    _warehouse: Warehouse | None = PrivateAttr(default=None)

    def get(self) -> Warehouse:
        if self._warehouse is None:
            self._warehouse = Warehouse(self.url)
            self._warehouse.create_schema()
        return self._warehouse


class Artefacts(dg.ConfigurableResource):  # type: ignore[type-arg]
    """A folder for audit artefacts of each run (Data Docs, charts)."""

    base_dir: str

    def folder(self, kind: str, business_date: dt.date, run_id: str) -> Path:
        path = Path(self.base_dir).resolve() / kind / business_date.isoformat() / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path


class Sharding(dg.ConfigurableResource):  # type: ignore[type-arg]
    """How many account shards the margin models are split into (parallel steps under
    the multiprocess or a distributed executor; the results do not depend on it)."""

    shards: int = 1


def shards_setting(shards: int | None = None) -> int:
    """An explicit shard count, else ``MARGIN_SHARDS``, else 1."""
    value = shards if shards is not None else int(os.environ.get("MARGIN_SHARDS", "1"))
    if value < 1:
        raise ValueError(f"the shard count must be at least 1, got {value}")
    return value


def warehouse_url_setting(url: str | None = None) -> str | dg.EnvVar:
    """An explicit URL, else ``EnvVar("MARGIN_WAREHOUSE_URL")`` when set, else the default."""
    if url:
        return url
    if os.environ.get("MARGIN_WAREHOUSE_URL"):
        return dg.EnvVar("MARGIN_WAREHOUSE_URL")
    return DEFAULT_WAREHOUSE_URL


def resolved_warehouse_url(url: str | None = None) -> str:
    """The URL itself (for commands that open the warehouse outside Dagster): an explicit
    URL, else ``MARGIN_WAREHOUSE_URL``, else the default. Never log it: it may carry a
    password (``Warehouse.where`` is the printable form)."""
    return url or os.environ.get("MARGIN_WAREHOUSE_URL") or DEFAULT_WAREHOUSE_URL


def build_resources(
    landing_dir: str | None = None,
    warehouse_url: str | None = None,
    ruleset: str | None = None,
    artefacts_dir: str | None = None,
    shards: int | None = None,
) -> dict[str, dg.ConfigurableResource]:  # type: ignore[type-arg]
    return {
        "landing": LandingZone(
            landing_dir=landing_dir or os.environ.get("MARGIN_LANDING_DIR", DEFAULT_LANDING_DIR)
        ),
        "warehouse": WarehouseResource(url=warehouse_url_setting(warehouse_url)),
        "ruleset": RulesetSource(name=ruleset or os.environ.get("MARGIN_RULESET", DEFAULT_RULESET)),
        "artefacts": Artefacts(
            base_dir=artefacts_dir or os.environ.get("MARGIN_ARTEFACTS_DIR", DEFAULT_ARTEFACTS_DIR)
        ),
        "sharding": Sharding(shards=shards_setting(shards)),
    }
