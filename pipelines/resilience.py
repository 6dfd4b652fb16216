"""Which warehouse errors are worth a retry, and the retry policy.

Transient: the server cannot be reached or dropped the connection (PostgreSQL down,
restarting, a network cut: ``psycopg.OperationalError`` without an authentication or
catalog SQLSTATE, admin shutdown, "cannot connect now"), a serialization failure or
deadlock, and a DuckDB file held by another process (DuckDB allows one writing process
per file: a concurrent run waits for it). Everything else (bad SQL, a constraint, wrong
credentials, a database that does not exist) fails at once.

The policy (``tenacity``): exponential backoff with jitter from 0.25 s up to 8 s between
attempts, for at most ``timeout_s`` seconds in all, then
:class:`WarehouseUnavailable` naming the warehouse (never its password), the attempts
and the last error. A DuckDB file held by another process is not an outage but another
run at work: it is waited for up to ``busy_timeout_s`` (the lock timeout), then the
caller's ``busy`` error says so. Every retried unit is a whole transaction, so a retry never
publishes part of one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
import tenacity

log = logging.getLogger(__name__)
T = TypeVar("T")

#: SQLSTATE classes and codes that a retry cannot fix: authentication (28), invalid
#: catalog name (3D000: the database does not exist), insufficient privilege (42501).
PERMANENT_SQLSTATES = ("28", "3D000", "42501")
#: SQLSTATEs that a retry can fix: serialization failure, deadlock, admin shutdown,
#: crash shutdown, cannot connect now, too many connections.
TRANSIENT_SQLSTATES = ("40001", "40P01", "57P01", "57P02", "57P03", "53300")


class WarehouseUnavailable(Exception):
    """The warehouse could not be reached or used within the retry budget."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (SQLAlchemy-wrapped or a driver's own) may pass on a retry."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa.exc.DisconnectionError):
        return True
    orig = getattr(exc, "orig", None) or exc
    module = type(orig).__module__.split(".")[0]
    sqlstate = getattr(orig, "sqlstate", None) or ""
    if module == "psycopg":
        import psycopg

        if sqlstate.startswith(PERMANENT_SQLSTATES):
            return False
        if sqlstate.startswith(TRANSIENT_SQLSTATES):
            return True
        return isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError) and not sqlstate
    return is_busy(exc)


def is_busy(exc: BaseException | None) -> bool:
    """Whether ``exc`` says that another process holds the DuckDB file."""
    orig = getattr(exc, "orig", None) or exc
    if type(orig).__module__.split(".")[0] not in ("duckdb", "_duckdb"):
        return False
    text = str(orig)
    return "Could not set lock" in text or "Conflicting lock" in text


def with_retries(
    operation: Callable[[], T],
    *,
    what: str,
    where: str,
    timeout_s: float,
    paused_s: Callable[[], float] | None = None,
    busy_timeout_s: float | None = None,
    busy: Callable[[str], Exception] | None = None,
) -> T:
    """Run ``operation`` (a whole transaction), retrying transient errors (module doc).

    ``what`` says what is being done (``publish 2026-11-20``), ``where`` the warehouse
    without its password; both go into the log and the final error. ``paused_s`` gives
    the seconds so far that do not count against ``timeout_s`` (waiting for another
    run's lock is not an outage). With ``busy_timeout_s`` and ``busy``, a file held by
    another process (:func:`is_busy`) is waited for that long, then ``busy(message)`` is
    raised.
    """
    attempts = 0
    paused = paused_s or (lambda: 0.0)

    def attempt() -> T:
        nonlocal attempts
        attempts += 1
        return operation()

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s: %s unavailable (%s); attempt %d, retrying in %.1f s",
            what,
            where,
            _first_line(error),
            state.attempt_number,
            state.upcoming_sleep,
        )

    def stop(state: tenacity.RetryCallState) -> bool:
        error = state.outcome.exception() if state.outcome else None
        waiting_for_another = busy is not None and busy_timeout_s is not None and is_busy(error)
        limit = busy_timeout_s if waiting_for_another else timeout_s
        return state.seconds_since_start - paused() >= limit  # type: ignore[operator]

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_exponential_jitter(multiplier=0.25, max=8.0, jitter=0.25),
        stop=stop,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except Exception as exc:
        if not is_transient(exc):
            raise
        if busy is not None and busy_timeout_s is not None and is_busy(exc):
            raise busy(
                f"{what}: another run holds the warehouse {where} (DuckDB admits one "
                f"process at a time); waited {busy_timeout_s:g} s "
                "(MARGIN_WAREHOUSE_LOCK_TIMEOUT_S)"
            ) from None
        raise WarehouseUnavailable(
            f"{what}: warehouse {where} unavailable, gave up after {attempts} attempt(s) "
            f"within {timeout_s:g} s: {_first_line(exc)}"
        ) from None  # the message carries the last error; reports show the innermost cause


def _first_line(error: BaseException | None) -> str:
    """The driver's message of ``error`` without SQLAlchemy's background link."""
    if error is None:
        return "no error"
    orig = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return lines[0] if lines else type(orig).__name__
