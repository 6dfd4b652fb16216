"""The SQL warehouse: schema, atomic replacement of a business date, reads.

One class wraps SQLAlchemy for every backend. A business date is replaced inside ONE
transaction (delete the date's rows of every table, insert the new ones, append the
pipeline_run row): readers see the old date or the new one, never a mix. Inserts take
the fast path of each backend through the same transaction's DBAPI connection: DuckDB
inserts from a registered Arrow table, PostgreSQL from ``COPY``. Table and column names
come only from :mod:`risk_core.outputs`; values only through bound parameters or COPY.

Faults. Two writers of one date never interleave: the transaction runs under the date's
lock (PostgreSQL: a transaction-scoped advisory lock, released by commit, rollback or
a dead session; DuckDB: an exclusive ``fcntl`` lock on ``<database>.<date>.lock``, taken
before the connection opens and released after the commit, and by the kernel when its
process dies). DuckDB connections are not pooled, so a
process holds the file only while it uses it and a concurrent run waits for it. A
transaction that fails on a transient error (:mod:`pipelines.resilience`: the server
unreachable or restarting, the DuckDB file busy) is retried whole with backoff, then
fails cleanly with :class:`~pipelines.resilience.WarehouseUnavailable`; a process
killed mid-transaction leaves the date as it was (the transaction never commits).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import io
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import polars as pl
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from pipelines.resilience import with_retries
from risk_core import outputs
from risk_core.outputs import OutputTable

if TYPE_CHECKING:
    from risk_core.backtest.summary import WindowAggregates

DDL_DIR = Path(__file__).resolve().parents[1] / "sql" / "ddl"
VIEWS_DIR = Path(__file__).resolve().parents[1] / "sql" / "views"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
ROLES_SQL = Path(__file__).resolve().parents[1] / "sql" / "roles" / "postgresql.sql"


class WarehouseError(Exception):
    """Frames that do not fit the warehouse tables (names table, column and rows)."""


class WarehouseBusy(WarehouseError):
    """Another run holds the lock of the business date."""


def _lock_key(name: str) -> int:
    """A PostgreSQL advisory lock key (64-bit) for ``name`` (a business date, "migrate")."""
    return int.from_bytes(
        hashlib.sha256(f"margin-eod:{name}".encode()).digest()[:8], "big", signed=True
    )


def _quote(name: str) -> str:
    return f'"{name}"'


def _columns(table: OutputTable) -> str:
    return ", ".join(_quote(c) for c in table.columns)


_T = TypeVar("_T")
#: Runs one SELECT in a read transaction: (sql with :name parameters, parameters, result
#: schema) -> frame (:meth:`Warehouse.read_consistent`).
SelectFrame = Callable[[str, Mapping[str, object], Mapping[str, pl.DataType]], pl.DataFrame]


#: Seconds a warehouse operation keeps retrying transient errors (``MARGIN_WAREHOUSE_RETRY_S``).
DEFAULT_RETRY_S = 120.0
#: Seconds a publication waits for another run holding the date's lock
#: (``MARGIN_WAREHOUSE_LOCK_TIMEOUT_S``).
DEFAULT_LOCK_TIMEOUT_S = 600.0


#: libpq settings (defaults; a URL's own query parameters win) that turn a network cut
#: that drops packets, rather than resetting the connection, into an error that is
#: retried, instead of a wait without end: connecting gives up after 10 s, an idle
#: connection is probed every 10 s after 30 s, unacknowledged data fails after 60 s.
PG_TIMEOUTS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


def _setting(name: str, given: float | None, default: float) -> float:
    return float(given if given is not None else os.environ.get(name, default))


#: Called with "after_delete", "before_commit" and "after_commit" while a date is
#: published (fault drills hook in here, see ``assets.failpoints``).
PhaseHook = Callable[[str], None]


class Warehouse:
    def __init__(
        self, url: str, *, retry_s: float | None = None, lock_timeout_s: float | None = None
    ) -> None:
        self.url = url
        self.retry_s = _setting("MARGIN_WAREHOUSE_RETRY_S", retry_s, DEFAULT_RETRY_S)
        self.lock_timeout_s = _setting(
            "MARGIN_WAREHOUSE_LOCK_TIMEOUT_S", lock_timeout_s, DEFAULT_LOCK_TIMEOUT_S
        )
        backend = sa.engine.make_url(url).get_backend_name()
        if backend == "duckdb":  # hold the file only while using it (module doc)
            self.engine = sa.create_engine(url, poolclass=NullPool)
        else:  # a pooled connection that died with a server restart is replaced
            given = set(sa.engine.make_url(url).query)
            self.engine = sa.create_engine(
                url,
                pool_pre_ping=True,
                connect_args={k: v for k, v in PG_TIMEOUTS.items() if k not in given},
            )

    @property
    def where(self) -> str:
        """The warehouse URL without its password (for messages and logs), also one given
        as a query parameter (``?password=``)."""
        url = self.engine.url.difference_update_query(["password", "sslpassword"])
        return url.render_as_string(hide_password=True)

    def _retrying(
        self,
        what: str,
        operation: Callable[[], object],
        paused_s: Callable[[], float] | None = None,
    ) -> object:
        return with_retries(
            operation,
            what=what,
            where=self.where,
            timeout_s=self.retry_s,
            paused_s=paused_s,
            busy_timeout_s=self.lock_timeout_s,
            busy=WarehouseBusy,
        )

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

        def upgrade() -> None:
            with self.engine.begin() as conn:
                if self.dialect == "postgresql":
                    # Runs starting at once on a new warehouse: one upgrades, the others
                    # wait and then find it at head (DuckDB: one process holds the file).
                    conn.execute(
                        sa.text("select pg_advisory_xact_lock(:k)"), {"k": _lock_key("migrate")}
                    )
                config.attributes["connection"] = conn
                command.upgrade(config, revision)

        self._retrying(f"migrate to {revision}", upgrade)

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
        on_phase: PhaseHook | None = None,
    ) -> dict[str, int]:
        """Replace the rows of ``business_date`` in every given table, in one transaction
        under the date's lock, retried whole on transient errors (module doc).

        A retry after a commit whose acknowledgement was lost finds the run's
        ``pipeline_run`` row and writes nothing again. The row's ``finished_at`` is the
        warehouse's clock at publication, under the lock: the order of publications of a
        date, whichever machines computed them (:meth:`latest_run`).
        """
        frames = {name: self._conform(name, frame, business_date) for name, frame in tables.items()}
        if pipeline_run is not None:
            frames[outputs.PIPELINE_RUN.name] = self._conform(
                outputs.PIPELINE_RUN.name, pipeline_run, None
            )
        phase = on_phase or (lambda _: None)
        ordered = [t for t in outputs.ALL_TABLES if t.name in frames]

        run_frame = frames.get(outputs.PIPELINE_RUN.name)
        run_ids = [] if run_frame is None else run_frame["run_id"].to_list()
        waited = [0.0]  # seconds spent waiting for the date's lock: not the retry budget's

        def transaction() -> dict[str, int]:
            # The lock outlives the transaction: the stack commits first, then unlocks.
            with contextlib.ExitStack() as stack:
                if self.dialect != "postgresql":
                    stack.enter_context(self._file_lock(business_date, waited))
                conn = stack.enter_context(self.engine.begin())
                if self.dialect == "postgresql":
                    self._advisory_lock(conn, business_date, waited)
                if run_ids and self._published(conn, run_ids):
                    # A retry after a commit whose acknowledgement was lost: this run is
                    # already published; writing again could overwrite a later run's.
                    return {t.name: frames[t.name].height for t in ordered}
                for table in ordered:
                    if table.date_column is not None:  # pipeline_run is appended to
                        conn.execute(
                            sa.text(f"delete from {table.name} where {table.date_column} = :d"),
                            {"d": business_date},
                        )
                phase("after_delete")
                for table in ordered:
                    self._insert(conn, table, frames[table.name])
                if run_ids:
                    self._stamp_publication(conn, run_ids)
                phase("before_commit")
            return {t.name: frames[t.name].height for t in ordered}

        written: dict[str, int] = self._retrying(  # type: ignore[assignment]
            f"publish {business_date}", transaction, paused_s=lambda: waited[0]
        )
        phase("after_commit")
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

        def transaction() -> None:
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

        self._retrying("publish backtest models", transaction)
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
    def read_table(
        self,
        name: str,
        business_date: dt.date | None = None,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Rows of a table (of one business date), ordered by its key, typed as outputs.

        ``columns`` restricts the read to those columns, in that order (the rows keep the
        key's order). Rows travel column-wise (:meth:`read_consistent`): 300,000 rows of
        ``margin_account`` take a fraction of a second instead of seconds row by row.
        """
        table = outputs.BY_NAME[name]
        wanted = list(table.columns) if columns is None else list(columns)
        unknown = sorted(set(wanted) - set(table.columns))
        if unknown or not wanted or len(set(wanted)) != len(wanted):
            raise WarehouseError(f"{name}: cannot read columns {wanted} (unknown: {unknown})")
        schema = {c: table.columns[c] for c in wanted}
        sql = f"select {', '.join(_quote(c) for c in wanted)} from {table.name}"
        params: dict[str, object] = {}
        if business_date is not None:
            sql += " where business_date = :business_date"
            params["business_date"] = business_date
        sql += " order by " + ", ".join(_quote(k) for k in table.key)
        return self.read_consistent(f"read {name}", lambda select: select(sql, params, schema))

    def read_consistent(self, what: str, read: Callable[[SelectFrame], _T]) -> _T:
        """Run ``read`` in one read-only transaction that sees a single snapshot of the
        warehouse (PostgreSQL: repeatable read; DuckDB: one transaction), retried whole
        on transient errors; ``what`` names the read in logs and errors.

        ``read`` gets ``select(sql, params, schema)``: it runs one SELECT whose table and
        column names come from :mod:`risk_core.outputs` and whose values are ``:name``
        bound parameters, and returns its rows as a frame of ``schema`` (the select
        list's names, in order). Rows travel column-wise, never as Python tuples: DuckDB
        through Arrow, PostgreSQL through ``COPY (select ...) TO STDOUT`` in CSV; other
        backends row by row.
        """

        def attempt() -> _T:
            with self.engine.connect() as conn:
                raw = conn.connection.driver_connection
                if self.dialect == "duckdb":
                    raw.execute("begin transaction")
                elif self.dialect == "postgresql":
                    with raw.cursor() as cursor:  # the text forms that _copy_out parses
                        cursor.execute("set transaction isolation level repeatable read, read only")
                        cursor.execute("set local timezone = 'UTC'")
                        cursor.execute("set local datestyle = 'ISO, YMD'")
                        cursor.execute("set local extra_float_digits = 3")
                try:
                    return read(lambda sql, params, schema: self._select(conn, sql, params, schema))
                finally:
                    if self.dialect == "duckdb":
                        raw.execute("rollback")

        return self._retrying(what, attempt)  # type: ignore[return-value]

    def read_backtest_window(self, before: dt.date, dates: int) -> WindowAggregates:
        """backtest_result aggregated over its last ``dates`` business dates before
        ``before``, in the warehouse (:mod:`pipelines.backtest_store`)."""
        from pipelines.backtest_store import read_window

        return read_window(self, before, dates)

    def _select(
        self,
        conn: sa.Connection,
        sql: str,
        params: Mapping[str, object],
        schema: Mapping[str, pl.DataType],
    ) -> pl.DataFrame:
        """One SELECT on ``conn`` as a frame of ``schema`` (see :meth:`read_consistent`)."""
        compiled = sa.text(sql).compile(dialect=conn.dialect)
        raw = conn.connection.driver_connection
        if self.dialect == "duckdb":
            arguments = [params[p] for p in compiled.positiontup or ()]
            fetched = pl.DataFrame(raw.execute(str(compiled), arguments).to_arrow_table())
        elif self.dialect == "postgresql":
            fetched = self._copy_out(raw, str(compiled), params, schema)
        else:
            rows = conn.execute(sa.text(sql), dict(params)).fetchall()
            fetched = pl.DataFrame([tuple(r) for r in rows], schema=list(schema), orient="row")
            return fetched.cast(dict(schema), strict=False)
        if fetched.columns != list(schema):
            raise WarehouseError(f"select returned columns {fetched.columns}, not {list(schema)}")
        return fetched.cast(dict(schema), strict=True)

    @staticmethod
    def _copy_out(
        raw: Any, sql: str, params: Mapping[str, object], schema: Mapping[str, pl.DataType]
    ) -> pl.DataFrame:
        """PostgreSQL: the rows of ``sql`` through ``COPY ... TO STDOUT`` in CSV (psycopg
        binds ``params`` client-side, quoted), parsed by Polars.

        The transaction's settings (:meth:`read_consistent`) fix the text forms: dates
        ``YYYY-MM-DD``, timestamps in UTC ``YYYY-MM-DD HH:MM:SS[.ffffff]+00``, floats
        exact (shortest round-trip digits, ``NaN``, ``Infinity``), booleans ``t``/``f``.
        NULL is an unquoted empty field and an empty string a quoted one, which Polars
        reads back as null and ``""``.
        """
        copy_sql = f"copy ({sql}) to stdout with (format csv)"
        chunks: list[bytes] = []
        with raw.cursor() as cursor, cursor.copy(copy_sql, dict(params) or None) as copy:
            chunks.extend(bytes(chunk) for chunk in copy)
        data = b"".join(chunks)
        if not data:
            return pl.DataFrame(schema=dict(schema))
        as_text = {
            c: t if t in (pl.Float64, pl.Int64, pl.String) else pl.String for c, t in schema.items()
        }
        frame = pl.read_csv(io.BytesIO(data), has_header=False, schema=as_text)
        converted = []
        for column, dtype in schema.items():
            text = pl.col(column)
            if dtype == pl.Boolean:
                converted.append(text == "t")
            elif dtype == pl.Date:
                converted.append(text.str.to_date("%Y-%m-%d"))
            elif isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
                converted.append(
                    text.str.to_datetime(
                        "%Y-%m-%d %H:%M:%S%.f%#z", time_unit=dtype.time_unit, time_zone="UTC"
                    ).dt.convert_time_zone(dtype.time_zone)
                )
            elif isinstance(dtype, pl.Datetime):
                converted.append(
                    text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit=dtype.time_unit)
                )
            else:
                converted.append(text.cast(dtype, strict=True))
        return frame.select(converted)

    def has_table(self, name: str) -> bool:
        return sa.inspect(self.engine).has_table(outputs.BY_NAME[name].name)

    def business_dates(self, name: str) -> list[dt.date]:
        table = outputs.BY_NAME[name]
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(f"select distinct business_date from {table.name} order by 1")
            ).fetchall()
        return [r[0] for r in rows]

    def latest_run(self, business_date: dt.date) -> dict[str, object] | None:
        """The pipeline_run row of the run whose rows ``business_date`` holds now (the
        last one published: ``finished_at`` is the warehouse's clock under the date's
        lock), or None when nothing is published for the date."""
        if not self.has_table("pipeline_run"):
            return None
        columns = _columns(outputs.PIPELINE_RUN)
        sql = (
            f"select {columns} from pipeline_run where business_date = :d "
            "and status = 'success' order by finished_at desc, run_id desc limit 1"
        )

        def read() -> dict[str, object] | None:
            with self.engine.connect() as conn:
                row = conn.execute(sa.text(sql), {"d": business_date}).mappings().first()
            return None if row is None else dict(row)

        return self._retrying(f"read the runs of {business_date}", read)  # type: ignore[return-value]

    # -- locking --------------------------------------------------------------------------
    def _busy(self, business_date: dt.date) -> WarehouseBusy:
        return WarehouseBusy(
            f"another run of {business_date} is publishing it; waited "
            f"{self.lock_timeout_s:g} s (MARGIN_WAREHOUSE_LOCK_TIMEOUT_S) for its lock"
        )

    def _advisory_lock(
        self, conn: sa.Connection, business_date: dt.date, waited: list[float]
    ) -> None:
        """PostgreSQL: the date's transaction-scoped advisory lock, held until ``conn``'s
        transaction ends (module doc); waits up to ``lock_timeout_s``, then raises
        :class:`WarehouseBusy`. Adds the seconds waited to ``waited[0]``."""
        conn.execute(
            sa.text("select set_config('lock_timeout', :t, true)"),
            {"t": f"{int(self.lock_timeout_s * 1000)}ms"},
        )
        start = time.monotonic()
        try:
            conn.execute(
                sa.text("select pg_advisory_xact_lock(:k)"), {"k": _lock_key(str(business_date))}
            )
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                raise self._busy(business_date) from None
            raise
        finally:
            waited[0] += time.monotonic() - start

    @contextlib.contextmanager
    def _file_lock(self, business_date: dt.date, waited: list[float]) -> Iterator[None]:
        """DuckDB: an exclusive ``fcntl`` lock on ``<database>.<date>.lock``, taken before
        the connection opens the file and released after it commits (module doc); waits
        up to ``lock_timeout_s``, then raises :class:`WarehouseBusy`."""
        database = self.engine.url.database or "memory"
        start = time.monotonic()
        with open(f"{database}.{business_date}.lock", "a+") as handle:
            try:
                while True:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() - start > self.lock_timeout_s:
                            raise self._busy(business_date) from None
                        time.sleep(0.2)
            finally:
                waited[0] += time.monotonic() - start
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _published(self, conn: sa.Connection, run_ids: Sequence[str]) -> bool:
        table = outputs.PIPELINE_RUN.name
        found = conn.execute(
            sa.select(sa.func.count())
            .select_from(sa.table(table))
            .where(sa.column("run_id").in_(list(run_ids)))
        ).scalar()
        return bool(found)

    def _stamp_publication(self, conn: sa.Connection, run_ids: Sequence[str]) -> None:
        """``finished_at`` of the run's rows := the warehouse's clock, under the date's
        lock (PostgreSQL: ``clock_timestamp()``, not the transaction's start, which may
        precede a wait for the lock; DuckDB: its transaction starts after the lock)."""
        clock = "clock_timestamp()" if self.dialect == "postgresql" else "now()"
        table = outputs.PIPELINE_RUN.name
        conn.execute(
            sa.text(f"update {table} set finished_at = {clock} where run_id in :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": list(run_ids)},
        )
