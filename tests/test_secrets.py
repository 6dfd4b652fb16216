"""Secrets only from the environment: the command line refuses a password; a password
given through ``MARGIN_WAREHOUSE_URL`` (read with Dagster's ``EnvVar``) appears in no
output, no Dagster event log, no artefact and no warehouse table, when the run succeeds
and when it fails; the repository holds no credentials."""

from __future__ import annotations

import datetime as dt
import re
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from risk_core.landing.generator import generate_landing
from tests.support import PROJECT, cli

D = dt.date(2026, 11, 20)


def _canary() -> str:
    return "canary-" + uuid.uuid4().hex


def _with_password(url: str, password: str, port: int | None = None) -> str:
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url).set(password=password)
    if port is not None:
        parsed = parsed.set(port=port)
    return parsed.render_as_string(hide_password=False)


def _found_in(folder: Path, secret: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres:{secret}@127.0.0.1:5432/test",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test?password={secret}",
    ],
    ids=["user-password", "query-parameter"],
)
def test_the_command_line_refuses_a_password(url: str) -> None:
    secret = _canary()
    done = cli("run", "--date", D.isoformat(), "--warehouse", url.format(secret=secret))
    assert done.returncode == 2
    assert "MARGIN_WAREHOUSE_URL" in done.stderr
    assert secret not in done.stdout + done.stderr


def test_the_printable_url_has_no_password() -> None:
    from pipelines.warehouse import Warehouse

    secret = _canary()
    for url in (
        f"postgresql+psycopg://postgres:{secret}@127.0.0.1:5432/test",
        f"postgresql+psycopg://postgres@127.0.0.1:5432/test?password={secret}&sslmode=prefer",
    ):
        where = Warehouse(url).where
        assert secret not in where
        assert "127.0.0.1:5432/test" in where


@pytest.mark.integration
@pytest.mark.postgres
def test_a_password_from_the_environment_is_never_written(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    """PostgreSQL here trusts local connections, so any password logs in: the canary
    goes through the whole run as a real credential would."""
    from pipelines.warehouse import Warehouse
    from risk_core import outputs

    secret = _canary()
    landing = tmp_path / "landing"
    generate_landing(landing, D, accounts=10, positions=80, seed=4)
    home = tmp_path / "dagster_home"
    home.mkdir()
    common = [
        "--landing",
        str(landing),
        "--artefacts",
        str(tmp_path / "artefacts"),
    ]
    url = _with_password(fresh_postgres_url, secret)
    # a backfill (which reads the warehouse outside Dagster to skip published dates)
    backfill = ["backfill", "--start", D.isoformat(), "--end", D.isoformat()]
    ok = cli(*backfill, *common, env={"MARGIN_WAREHOUSE_URL": url, "DAGSTER_HOME": str(home)})
    assert ok.returncode == 0, ok.stderr
    assert f"{D}: published" in ok.stderr
    # a warehouse that does not answer: the failure names it, without the password
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    down = _with_password(fresh_postgres_url, secret, port=closed_port)
    failed = cli(
        "run",
        "--date",
        D.isoformat(),
        *common,
        env={
            "MARGIN_WAREHOUSE_URL": down,
            "DAGSTER_HOME": str(home),
            "MARGIN_WAREHOUSE_RETRY_S": "1",
        },
    )
    assert failed.returncode == 1
    assert "unavailable" in failed.stderr and f":{closed_port}/" in failed.stderr
    for output in (ok.stdout, ok.stderr, failed.stdout, failed.stderr):
        assert secret not in output
    assert home.is_dir() and any(home.rglob("*.db")), "the instance kept its event logs"
    assert _found_in(home, secret) == [], "the password is in the Dagster instance"
    assert _found_in(tmp_path / "artefacts", secret) == []
    wh = Warehouse(url)
    for table in outputs.ALL_TABLES:
        assert secret not in str(wh.read_table(table.name).rows())


#: A URL that carries a password (user, colon, password, at-sign after the scheme);
#: placeholders are allowed.
CREDENTIAL_URL = re.compile(r"[a-z][a-z0-9+]*://[^/\s:@\"'<>]+:([^@\s\"'<>/]+)@")
PLACEHOLDERS = ("...", "<password>")
#: A value assigned to libpq's password variable (spelt in two parts so that this
#: file does not match itself); ``$VAR`` and ``{...}`` placeholders are allowed.
ASSIGNED_PGPASSWORD = re.compile("PG" + r"PASSWORD=[^\s$\"'{]\S*")
#: A literal password in configuration (YAML, JSON, TOML, shell, a ``kubectl
#: --from-literal``; spelt in parts); environment references (``env:``, ``$VAR``,
#: ``{{ }}``) and empty values are allowed.
LITERAL_PASSWORD = re.compile(
    r"""(?i)\bpass""" + r"""word["']?\s*[:=]\s*["']?(?!\s|\$|\{|env\b|["']|$)[^\s"',}]+"""
)


CONFIG_SUFFIXES = (".yaml", ".yml", ".json", ".toml", ".ini", ".cfg", ".env", ".sh")


def test_the_credential_patterns_catch_credentials() -> None:
    """The scan below finds nothing only if its patterns can find something."""
    # samples spelt in parts, so that this file does not match itself
    assert CREDENTIAL_URL.search("url: postgresql+psycopg://margin:" + "s3cret@db:5432/wh")
    assert not CREDENTIAL_URL.search("postgresql+psycopg://margin@db:5432/warehouse")
    assert ASSIGNED_PGPASSWORD.search("export PG" + "PASSWORD=s3cret")
    assert not ASSIGNED_PGPASSWORD.search("PG" + "PASSWORD=$PGPASSWORD_FROM_VAULT")
    assert LITERAL_PASSWORD.search('password: "s3cret"')
    assert LITERAL_PASSWORD.search("--from-literal=password=s3cret")
    assert not LITERAL_PASSWORD.search("password:\n  env: DAGSTER_PG_PASSWORD")


def test_the_repository_holds_no_credentials() -> None:
    files = subprocess.run(
        ["git", "-C", str(PROJECT), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    found = []
    for name in files:
        path = PROJECT / name
        if not path.is_file() or path.suffix in (".png", ".parquet", ".duckdb"):
            continue
        text = path.read_text(errors="ignore")
        for match in CREDENTIAL_URL.finditer(text):
            password = match.group(1)
            if password in PLACEHOLDERS or password.startswith(("$", "{")):
                continue
            found.append(f"{name}: {match.group(0)}")
        found += [f"{name}: {m}" for m in ASSIGNED_PGPASSWORD.findall(text)]
        if path.suffix in CONFIG_SUFFIXES or path.name in ("Dockerfile", "Makefile"):
            found += [f"{name}: {m.group(0)}" for m in LITERAL_PASSWORD.finditer(text)]
    assert found == []
