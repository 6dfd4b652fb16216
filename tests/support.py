"""Helpers of the end-to-end fault, soak and secrets tests: the command line in a
subprocess, the published state of a date, whether a publication holds a date's lock,
a TCP proxy that cuts PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import polars as pl

from risk_core import outputs

PROJECT = Path(__file__).resolve().parents[1]
#: columns that name a run rather than its results
RUN_IDENTITY = ("run_id", "started_at", "finished_at")


def cli(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """``margin-eod ARGS`` in a new process (this interpreter), with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        env={**os.environ, **(env or {})},
        cwd=cwd or PROJECT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Spawned:
    """A ``margin-eod`` process started by :func:`spawned`; its stdout and stderr go to
    ``log``, readable while it runs."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL it, asserting that it was still running (else the kill tests nothing)."""
        assert self.alive(), f"ended before the kill ({self.process.returncode}):\n{self.tail()}"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)

    def finish(self, timeout: float = 600) -> int:
        """Its exit status, once it ends (``spawned`` kills it if it does not in time)."""
        return self.process.wait(timeout=timeout)

    def tail(self, chars: int = 3000) -> str:
        return self.output[-chars:]


@contextlib.contextmanager
def spawned(
    *args: str, log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Iterator[Spawned]:
    """``margin-eod ARGS`` started in a new process, output to ``log``; killed on leaving
    the block if it still runs (a test that failed or timed out leaves no process)."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", *args],
            env={**os.environ, **(env or {})},
            cwd=cwd or PROJECT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield Spawned(process, log)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def wait_until(
    condition: Callable[[], bool],
    what: str,
    *,
    running: Spawned | None = None,
    timeout: float = 300,
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds
    or as soon as the process ``running`` (which should bring the condition about) ends."""
    deadline = time.monotonic() + timeout
    while not condition():
        if running is not None and not running.alive():
            raise AssertionError(f"{what}: the process ended first:\n{running.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


def published(
    url: str, date: dt.date, *, require_rows: bool = False
) -> tuple[str | None, dict[str, pl.DataFrame]]:
    """The run whose rows ``date`` holds and those rows (without the run's identity).

    Asserts that the date is whole: every row of every dated table carries one run id,
    the run id of the date's latest pipeline_run row; and that no table holds a primary
    key twice (nor pipeline_run a run id). ``(None, {})`` when nothing is published for
    the date. ``require_rows``: also asserts that the date is published and that every
    dated table has rows (a comparison of empty tables proves nothing).
    """
    from pipelines.warehouse import Warehouse

    wh = Warehouse(url)
    try:
        latest = wh.latest_run(date) if wh.has_table("pipeline_run") else None
        frames: dict[str, pl.DataFrame] = {}
        run_ids: set[str] = set()
        for table in outputs.DATE_TABLES:
            frame = wh.read_table(table.name, date)
            duplicated = frame.select(table.key).is_duplicated()
            assert not duplicated.any(), (
                f"{date}: {table.name} holds a key {table.key} twice: "
                f"{frame.filter(duplicated).select(table.key).head(5).to_dicts()}"
            )
            run_ids |= set(frame["run_id"].to_list())
            frames[table.name] = frame.drop([c for c in RUN_IDENTITY if c in frame.columns])
        if latest is not None:
            runs = wh.read_table("pipeline_run").filter(pl.col("business_date") == date)
            assert runs["run_id"].is_unique().all(), f"{date}: a pipeline_run row twice"
    finally:
        wh.engine.dispose()
    if latest is None:
        assert not run_ids, f"rows of {date} without a pipeline_run: {run_ids}"
        assert not require_rows, f"nothing is published for {date}"
        return None, {}
    assert run_ids <= {latest["run_id"]}, f"{date} holds rows of several runs: {run_ids}"
    assert frames["margin_account"].height > 0, f"{date}: a pipeline_run without rows"
    if require_rows:
        empty = sorted(name for name, frame in frames.items() if frame.is_empty())
        assert not empty, f"{date}: no rows in {empty}"
    return str(latest["run_id"]), frames


def pipeline_runs(url: str, date: dt.date) -> pl.DataFrame:
    from pipelines.warehouse import Warehouse

    wh = Warehouse(url)
    try:
        return wh.read_table("pipeline_run").filter(pl.col("business_date") == date)
    finally:
        wh.engine.dispose()


def same_rows(a: Mapping[str, pl.DataFrame], b: Mapping[str, pl.DataFrame]) -> bool:
    return a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)


def copy_published(source: str, target: str, date: dt.date) -> str:
    """Publish in the warehouse ``target`` the rows that ``date`` holds in ``source``, with
    their run's pipeline_run row: the state a run of the date leaves, without running it
    again (a later date's backtest reads it). Returns the run id."""
    from pipelines.warehouse import Warehouse

    src, dst = Warehouse(source), Warehouse(target)
    try:
        latest = src.latest_run(date)
        assert latest is not None, f"nothing published for {date} in {source}"
        frames = {t.name: src.read_table(t.name, date) for t in outputs.DATE_TABLES}
        run = src.read_table("pipeline_run").filter(pl.col("run_id") == latest["run_id"])
        dst.create_schema()
        dst.replace_business_date(date, frames, pipeline_run=run)
    finally:
        src.engine.dispose()
        dst.engine.dispose()
    return str(latest["run_id"])


def publication_in_progress(url: str, date: dt.date) -> bool:
    """Whether a publication of ``date`` holds the date's lock now, seen from outside
    without taking anything. DuckDB: the ``fcntl`` lock on ``<database>.<date>.lock``
    (in ``/proc/locks``); PostgreSQL: the date's advisory lock, granted, in this database.
    A publication holds it from before its transaction begins until after it commits."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "duckdb":
        return _file_locked(Path(f"{parsed.database}.{date}.lock"))
    return any(granted for _, granted in date_lock_sessions(url, date))


def date_lock_sessions(url: str, date: dt.date) -> list[tuple[int, bool]]:
    """PostgreSQL: the sessions (backend pid, granted) holding or waiting for the advisory
    lock of ``date`` in the database of ``url``: the run publishing the date, and runs
    waiting to. PostgreSQL keeps a bigint key's high 32 bits in ``classid`` and its low
    32 bits in ``objid``, with ``objsubid`` 1."""
    import sqlalchemy as sa

    from pipelines.warehouse import _lock_key

    key = _lock_key(str(date))
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "select pid, granted from pg_locks where locktype = 'advisory'"
                    " and database = (select oid from pg_database"
                    " where datname = current_database())"
                    " and classid::bigint = :high and objid::bigint = :low and objsubid = 1"
                ),
                {"high": (key >> 32) & 0xFFFFFFFF, "low": key & 0xFFFFFFFF},
            ).all()
    finally:
        engine.dispose()
    return [(int(pid), bool(granted)) for pid, granted in rows]


def _file_locked(path: Path) -> bool:
    """Whether some process holds an ``flock`` on ``path``: read from ``/proc/locks``
    (Linux); elsewhere by trying a shared lock without waiting (held for an instant)."""
    if not path.exists():
        return False
    status = path.stat()
    locks = Path("/proc/locks")
    if locks.exists():
        for line in locks.read_text().splitlines():
            fields = line.split()
            if "->" in fields or len(fields) < 6 or fields[1] != "FLOCK":
                continue  # blocked requests ("->") hold nothing
            major, minor, inode = fields[5].split(":")
            if (int(major, 16), int(minor, 16), int(inode)) == (
                os.major(status.st_dev),
                os.minor(status.st_dev),
                status.st_ino,
            ):
                return True
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream`` (host, port), in threads.

    ``cut()`` drops every open connection (what clients see when the server restarts),
    ``refuse()`` closes the listening port (connection refused: the server is down),
    ``accept()`` opens it again on the same port.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.accept()

    def accept(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._serve, args=(listener,), daemon=True).start()

    def refuse(self) -> None:
        if self._listener is not None:
            # shutdown wakes the thread blocked in accept(); close alone would leave
            # the port listening until that accept() returned
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        self.cut()

    def cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self.refuse()

    def _serve(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def proxied(url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A :class:`TcpProxy` in front of the PostgreSQL ``url``, and the URL through it."""
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    try:
        yield (
            proxy,
            parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
        )
    finally:
        proxy.close()
