"""Helpers of the end-to-end fault, soak and secrets tests: the command line in a
subprocess, the published state of a date, a TCP proxy that cuts PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
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


def spawn(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[str]:
    """``margin-eod ARGS`` started in a new process; stdout and stderr merged."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *args],
        env={**os.environ, **(env or {})},
        cwd=cwd or PROJECT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def published(url: str, date: dt.date) -> tuple[str | None, dict[str, pl.DataFrame]]:
    """The run whose rows ``date`` holds and those rows (without the run's identity).

    Asserts that the date is whole: every row of every dated table carries one run id,
    the run id of the date's latest pipeline_run row. ``(None, {})`` when nothing is
    published for the date.
    """
    from pipelines.warehouse import Warehouse

    wh = Warehouse(url)
    latest = wh.latest_run(date) if wh.has_table("pipeline_run") else None
    frames: dict[str, pl.DataFrame] = {}
    run_ids: set[str] = set()
    for table in outputs.ALL_TABLES:
        if table.date_column is None:
            continue
        frame = wh.read_table(table.name, date)
        run_ids |= set(frame["run_id"].to_list())
        frames[table.name] = frame.drop([c for c in RUN_IDENTITY if c in frame.columns])
    if latest is None:
        assert not run_ids, f"rows of {date} without a pipeline_run: {run_ids}"
        return None, {}
    assert run_ids <= {latest["run_id"]}, f"{date} holds rows of several runs: {run_ids}"
    assert frames["margin_account"].height > 0, f"{date}: a pipeline_run without rows"
    return str(latest["run_id"]), frames


def pipeline_runs(url: str, date: dt.date) -> pl.DataFrame:
    from pipelines.warehouse import Warehouse

    return Warehouse(url).read_table("pipeline_run").filter(pl.col("business_date") == date)


def same_rows(a: Mapping[str, pl.DataFrame], b: Mapping[str, pl.DataFrame]) -> bool:
    return a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)


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
