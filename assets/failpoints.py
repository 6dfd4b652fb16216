"""Failpoints: named places where a fault drill can kill, stall or fail a run.

Off unless ``MARGIN_FAILPOINTS`` is set, e.g. ``MARGIN_FAILPOINTS=publish.before_commit=kill``
(comma-separated ``name=action``). Actions:

* ``kill``: SIGKILL this process (a crash: no cleanup, no rollback by Python);
* ``sleep:<seconds>``: stall here (a slow step, or time for a drill to cut the network);
* ``raise``: raise :class:`FailpointError` (an ordinary step failure);
* ``wait:<path>``: stall here until the file ``<path>`` exists (a drill releases the run
  when it is ready, instead of guessing a stall long enough on a busy machine). A drill
  that never creates the file leaves the run waiting, as a stuck step would.

Points: ``ingest`` (landing read and validated), ``compute`` (margin computed),
``publish.after_delete`` (inside the warehouse transaction, the date's old rows deleted,
nothing inserted), ``publish.before_commit`` (every row inserted, not committed),
``publish.after_commit`` (committed, the step not yet finished). The fault tests
(``tests/test_faults.py``) drive them; operators can run the same drills.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

POINTS = (
    "ingest",
    "compute",
    "publish.after_delete",
    "publish.before_commit",
    "publish.after_commit",
)


class FailpointError(RuntimeError):
    """Raised at a failpoint set to ``raise``."""


def _actions() -> dict[str, str]:
    spec = os.environ.get("MARGIN_FAILPOINTS", "")
    actions = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        if name not in POINTS:
            raise ValueError(f"MARGIN_FAILPOINTS: unknown failpoint {name!r}; known: {POINTS}")
        actions[name] = action or "raise"
    return actions


def failpoint(name: str) -> None:
    """Act as ``MARGIN_FAILPOINTS`` says at ``name`` (module doc); nothing when unset."""
    action = _actions().get(name)
    if action is None:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action.startswith("sleep:"):
        time.sleep(float(action.split(":", 1)[1]))
    elif action.startswith("wait:"):
        release = Path(action.split(":", 1)[1])
        while not release.exists():
            time.sleep(0.05)
    elif action == "raise":
        raise FailpointError(f"failpoint {name} (MARGIN_FAILPOINTS)")
    else:
        raise ValueError(f"MARGIN_FAILPOINTS: unknown action {action!r} at {name}")


def publish_phase(phase: str) -> None:
    """The warehouse's phase hook: ``after_delete`` -> failpoint ``publish.after_delete``."""
    failpoint(f"publish.{phase}")
