"""The SQL warehouse: schema, atomic replacement of a business date, reads.

One class wraps SQLAlchemy for every backend. A business date is replaced inside ONE
transaction (delete the date's rows of every table, insert the new ones, append the
pipeline_run row): readers see the old date or the new one, never a mix. Inserts take
the fast path of each backend through the same transaction's DBAPI connection: DuckDB
inserts from a registered Arrow table, PostgreSQL from ``COPY``. Table and column names
come only from :mod:`risk_core.outputs`; values only through bound parameters or COPY.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import io
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from risk_core import outputs
from risk_core.outputs import OutputTable

DDL_DIR = Path(__file__).resolve().parents[1] / "sql" / "ddl"
VIEWS_DIR = Path(__file__).resolve().parents[1] / "sql" / "views"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
ROLES_SQL = Path(__file__).resolve().parents[1] / "sql" / "roles" / "postgresql.sql"


class WarehouseError(Exception):
    """Frames that do not fit the warehouse tables (names table, column and rows)."""


class WarehouseBusy(WarehouseError):
    """Another run holds the lock of the business date."""


def _quote(name: str) -> str:
    return f'"{name}"'


def _columns(table: OutputTable) -> str:
    return ", ".join(_quote(c) for c in table.columns)


class Warehouse:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url, future=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- schema ---------------------------------------------------------------------------
    def create_schema(self) -> None:
        """Bring the warehouse to the newest schema (Alembic ``upgrade head``): tables
        that do not exist yet, then every later migration, views included."""
        self.migrate("head")

    def migrate(self, revision: str = "head") -> None:
        """Upgrade in place to ``revision`` in one transaction (DuckDB and PostgreSQL)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, revision)

    def schema_revision(self) -> str | None:
        if not sa.inspect(self.engine).has_table("alembic_version"):
            return None
        with self.engine.connect() as conn:
            return conn.execute(sa.text("select version_num from alembic_version")).scalar()

    def create_roles(self) -> None:
        """PostgreSQL: the ``pipeline`` role writes, the ``analyst`` role only reads."""
        if self.dialect != "postgresql":
            raise WarehouseError(f"roles are a PostgreSQL feature, not {self.dialect}'s")
        with self.engine.begin() as conn:
            conn.exec_driver_sql(ROLES_SQL.read_text().replace("%", "%%"))  # no placeholders

    # -- writing --------------------------------------------------------------------------
    def replace_business_date(
        self,
        business_date: dt.date,
        tables: Mapping[str, pl.DataFrame],
        pipeline_run: pl.DataFrame | None = None,
    ) -> dict[str, int]:
        """Replace the rows of ``business_date`` in every given table, in one transaction."""
        frames = {name: self._conform(name, frame, business_date) for name, frame in tables.items()}
        if pipeline_run is not None:
            frames[outputs.PIPELINE_RUN.name] = self._conform(
                outputs.PIPELINE_RUN.name, pipeline_run, None
            )
        written: dict[str, int] = {}
        with self.engine.begin() as conn:
            for table in outputs.ALL_TABLES:
                if table.name not in frames:
                    continue
                if table.date_column is not None:
                    conn.execute(
                        sa.text(
                            f"delete from {table.name} where {table.date_column} = :business_date"
                        ),
                        {"business_date": business_date},
                    )
                self._insert(conn, table, frames[table.name])
                written[table.name] = frames[table.name].height
        return written

    def replace_models(self, frames: Mapping[str, pl.DataFrame]) -> dict[str, int]:
        """Replace, in one transaction, the rows of the models present in each frame
        (backtest tables), over the frame's dates only: a historical backtest publishes
        its own model names without touching the end of day's rows."""
        written: dict[str, int] = {}
        conformed = {}
        for name, frame in frames.items():
            if name not in ("backtest_result", "backtest_summary"):
                raise WarehouseError(f"{name}: only backtest tables are replaced by model")
            conformed[name] = self._conform(name, frame, None)
        with self.engine.begin() as conn:
            for name, frame in conformed.items():
                table = outputs.BY_NAME[name]
                for model in sorted(set(frame["model"].to_list())):
                    dates = frame.filter(pl.col("model") == model)["business_date"]
                    conn.execute(
                        sa.text(
                            f"delete from {table.name} where model = :model "
                            "and business_date between :first and :last"
                        ),
                        {"model": model, "first": dates.min(), "last": dates.max()},
                    )
                self._insert(conn, table, frame)
                written[name] = frame.height
        return written

    def _conform(
        self, name: str, frame: pl.DataFrame, business_date: dt.date | None
    ) -> pl.DataFrame:
        if name not in outputs.BY_NAME:
            raise WarehouseError(f"unknown warehouse table {name!r}")
        table = outputs.BY_NAME[name]
        if set(frame.columns) != set(table.columns):
            missing = sorted(set(table.columns) - set(frame.columns))
            extra = sorted(set(frame.columns) - set(table.columns))
            raise WarehouseError(f"{name}: columns differ (missing {missing}, unexpected {extra})")
        try:
            frame = frame.select(list(table.columns)).cast(table.columns, strict=True)  # type: ignore[arg-type]
        except Exception as exc:
            raise WarehouseError(f"{name}: column types do not fit: {exc}") from None
        for key in table.key:
            nulls = frame[key].is_null()
            if nulls.any():
                rows = nulls.arg_true().head(5).to_list()
                raise WarehouseError(f"{name}: null in key column {key!r}, rows {rows}")
        duplicated = frame.select(table.key).is_duplicated()
        if duplicated.any():
            rows = duplicated.arg_true().head(5).to_list()
            raise WarehouseError(f"{name}: duplicated key {table.key}, rows {rows}")
        if business_date is not None and table.date_column is not None:
            other = frame[table.date_column] != business_date
            if other.any():
                rows = other.arg_true().head(5).to_list()
                raise WarehouseError(
                    f"{name}: {table.date_column} is not {business_date} in rows {rows}"
                )
        return frame

    def _insert(self, conn: sa.Connection, table: OutputTable, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        raw = conn.connection.driver_connection
        if self.dialect == "duckdb":
            view = f"_incoming_{table.name}"
            raw.register(view, frame.to_arrow())
            try:
                cols = _columns(table)
                raw.execute(f"insert into {table.name} ({cols}) select {cols} from {view}")
            finally:
                raw.unregister(view)
        elif self.dialect == "postgresql":
            buffer = io.BytesIO()
            frame.write_csv(
                buffer,
                include_header=False,
                quote_style="non_numeric",
                null_value="",
                datetime_format="%Y-%m-%dT%H:%M:%S%.6f%:z",
                float_precision=None,
            )
            with raw.cursor() as cursor:
                copy_sql = f"copy {table.name} ({_columns(table)}) from stdin with (format csv)"
                with cursor.copy(copy_sql) as copy:
                    copy.write(buffer.getvalue())
        else:
            conn.execute(
                sa.text(
                    f"insert into {table.name} ({_columns(table)}) values "
                    f"({', '.join(':' + c for c in table.columns)})"
                ),
                frame.to_dicts(),
            )

    # -- reading --------------------------------------------------------------------------
    def read_table(self, name: str, business_date: dt.date | None = None) -> pl.DataFrame:
        """Rows of a table (of one business date), ordered by its key, typed as outputs."""
        table = outputs.BY_NAME[name]
        sql = f"select {_columns(table)} from {table.name}"
        params: dict[str, object] = {}
        if business_date is not None:
            sql += " where business_date = :business_date"
            params["business_date"] = business_date
        sql += " order by " + ", ".join(_quote(k) for k in table.key)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.text(sql), params).fetchall()
        frame = pl.DataFrame([tuple(r) for r in rows], schema=list(table.columns), orient="row")
        return frame.cast(table.columns, strict=False)  # type: ignore[arg-type]

    def has_table(self, name: str) -> bool:
        return sa.inspect(self.engine).has_table(outputs.BY_NAME[name].name)

    def business_dates(self, name: str) -> list[dt.date]:
        table = outputs.BY_NAME[name]
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(f"select distinct business_date from {table.name} order by 1")
            ).fetchall()
        return [r[0] for r in rows]

    # -- locking --------------------------------------------------------------------------
    @contextlib.contextmanager
    def date_lock(self, business_date: dt.date, timeout_s: float = 600.0) -> Iterator[None]:
        """Hold the lock of a business date: two runs of one date never interleave.

        PostgreSQL: a session advisory lock keyed on the date; DuckDB and other files: an
        exclusive ``fcntl`` lock on ``<database>.<date>.lock``. Waits up to ``timeout_s``
        and then raises :class:`WarehouseBusy`.
        """
        key = int.from_bytes(
            hashlib.sha256(f"margin-eod:{business_date}".encode()).digest()[:8], "big", signed=True
        )
        deadline = time.monotonic() + timeout_s
        if self.dialect == "postgresql":
            with self.engine.connect() as conn:
                while not conn.execute(
                    sa.text("select pg_try_advisory_lock(:k)"), {"k": key}
                ).scalar():
                    conn.rollback()
                    if time.monotonic() > deadline:
                        raise WarehouseBusy(f"another run of {business_date} holds its lock")
                    time.sleep(0.2)
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(sa.text("select pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
            return
        database = self.engine.url.database or "memory"
        lock_path = Path(f"{database}.{business_date}.lock")
        with open(lock_path, "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise WarehouseBusy(
                            f"another run of {business_date} holds its lock"
                        ) from None
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
