"""The auditor's view: the Dagster webserver serves the asset graph, and its lineage
runs from the landing files to every warehouse table (GraphQL); headless Chromium opens
the asset graph page."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WAREHOUSE_TABLES = (
    "margin_account",
    "margin_component",
    "position_risk",
    "greeks_account",
    "data_quality",
    "pipeline_run",
    "backtest_result",
    "backtest_summary",
)
LANDING = ("instruments", "marks", "index_prices", "positions", "collateral", "price_history")
QUERY = """
{ assetNodes { assetKey { path } dependencyKeys { path } groupName description
               owners { ... on TeamAssetOwner { team } }
               kinds } }
"""

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, query: str) -> dict:  # type: ignore[type-arg]
    request = urllib.request.Request(
        url,
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("dagster_home")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                nodes = _post(f"{url}/graphql", QUERY)["data"]["assetNodes"]
                if nodes:
                    break
            except Exception:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("the Dagster webserver did not serve the asset graph in 120 s")
            time.sleep(1)
        yield url
    finally:  # the webserver and its code-server children, by process group
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_lineage_from_landing_files_to_every_table(webserver: str) -> None:
    nodes = _post(f"{webserver}/graphql", QUERY)["data"]["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    upstream = {k: {"/".join(d["path"]) for d in n["dependencyKeys"]} for k, n in by_key.items()}

    def ancestors(key: str) -> set[str]:
        seen: set[str] = set()
        stack = [key]
        while stack:
            for parent in upstream.get(stack.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    for table in WAREHOUSE_TABLES:
        assert table in by_key, table
        node = by_key[table]
        assert node["groupName"] == "warehouse" and node["description"]
        assert node["owners"] and node["kinds"]
        found = ancestors(table)
        assert "landing_snapshot" in found, table
        if table in ("position_risk", "margin_account", "pipeline_run"):
            assert {f"landing/{name}" for name in LANDING} <= found, table
    for node in nodes:
        assert node["description"], node["assetKey"]


def test_chromium_opens_the_asset_graph(webserver: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make ui-test-deps installs it)")
    shot = tmp_path / "graph.png"
    dom = _chromium(chromium, tmp_path / "profile", "--dump-dom", f"{webserver}/asset-groups")
    assert "Global asset lineage" in dom
    for group in ("landing", "ingest", "risk", "backtest", "warehouse"):
        assert f">{group}<" in dom, group
    _chromium(chromium, tmp_path / "profile2", f"--screenshot={shot}", f"{webserver}/asset-groups")
    assert shot.is_file() and shot.stat().st_size > 10_000


def _chromium(binary: str, profile: Path, *args: str) -> str:
    """Headless Chromium as the machine allows it (closed network, root): its stdout."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=15000",
        "--window-size=1400,900",
    ]
    done = subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120)
    return done.stdout
