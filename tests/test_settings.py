"""Settings: defaults, list parsing, and one clear line naming the variable on bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from clerk_sync import ConfigError, Settings
from clerk_sync.cli import main
from clerk_sync.plugins import discover
from clerk_sync.settings import load_settings
from clerk_sync.testing import TEST_SECRET

ROOT = Path(__file__).resolve().parents[1]
FIELDS = sorted(Settings.model_fields)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in list(os.environ):
        if name.upper() in {f.upper() for f in FIELDS}:
            monkeypatch.delenv(name)


def default_of(name: str) -> Any:
    return Settings.model_fields[name].get_default(call_default_factory=True)


def test_defaults_match_the_design() -> None:
    settings = load_settings()
    assert settings.mongodb_url is None
    assert settings.mongodb_db == "clerk_sync"
    assert settings.clerk_sync_max_body_bytes == 1_048_576
    assert settings.clerk_sync_handler_timeout == 10
    assert settings.clerk_sync_event_retention_days == 30
    assert settings.clerk_sync_plugins is None
    assert settings.clerk_api_url == "https://api.clerk.com"


def test_several_secrets_split_on_spaces_and_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_WEBHOOK_SIGNING_SECRET", "whsec_YWFhYQ==, whsec_YmJiYg== whsec_Y2M=")
    secrets = load_settings().clerk_webhook_signing_secret
    assert [s.get_secret_value() for s in secrets] == [
        "whsec_YWFhYQ==",
        "whsec_YmJiYg==",
        "whsec_Y2M=",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLERK_WEBHOOK_SIGNING_SECRET", "not-a-whsec"),
        ("CLERK_WEBHOOK_SIGNING_SECRET", "whsec_%%%notbase64"),
        ("CLERK_SYNC_HANDLER_TIMEOUT", "-1"),
        ("CLERK_SYNC_MAX_BODY_BYTES", "lots"),
        ("LOG_FORMAT", "xml"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert name in message
    assert "\n" not in message
    assert value not in message or name != "CLERK_WEBHOOK_SIGNING_SECRET", "secrets never echoed"


@pytest.mark.parametrize("blank", ["", "  "])
@pytest.mark.parametrize("name", FIELDS)
def test_an_empty_variable_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, name: str, blank: str
) -> None:
    """Every field of the model (a new one included): an empty variable gives the default."""
    monkeypatch.setenv(name.upper(), blank)
    assert getattr(load_settings(), name) == default_of(name)


@pytest.mark.parametrize("name", FIELDS)
def test_an_empty_line_of_the_env_file_counts_as_unset(tmp_path: Path, name: str) -> None:
    (tmp_path / ".env").write_text(f"{name.upper()}=\n")
    assert getattr(load_settings(), name) == default_of(name)


def test_an_empty_variable_leaves_the_env_file_value(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("CLERK_SYNC_PLUGINS=users\nMONGODB_DB=from_file\n")
    monkeypatch.setenv("CLERK_SYNC_PLUGINS", "")
    monkeypatch.setenv("MONGODB_DB", "")
    settings = load_settings()
    assert settings.clerk_sync_plugins == ("users",)
    assert settings.mongodb_db == "from_file"


def test_env_example_as_shipped_loads_every_installed_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mongodb_url: str
) -> None:
    """`cp .env.example .env`, fill in the signing secret, and `clerk-sync check` passes with
    every installed plugin loaded (no empty line stops start-up or disables a plugin). `check`
    needs a MongoDB server: the test's, given in the environment, so the `.env` file keeps every
    other line as it ships (its empty `MONGODB_URL=` must not hide the environment's value)."""
    monkeypatch.setenv("MONGODB_URL", mongodb_url)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    text = (tmp_path / ".env").read_text()
    assert "\nCLERK_WEBHOOK_SIGNING_SECRET=\n" in text
    filled = text.replace(
        "\nCLERK_WEBHOOK_SIGNING_SECRET=\n", f"\nCLERK_WEBHOOK_SIGNING_SECRET={TEST_SECRET}\n"
    )
    (tmp_path / ".env").write_text(filled)
    result = CliRunner().invoke(main, ["check", "--json"])
    report = json.loads(result.stdout)
    statuses = {p["name"]: p["status"] for p in report["plugins"]}
    assert (result.exit_code, report["problems"]) == (0, [])
    assert statuses == dict.fromkeys({c.name for c in discover()}, "loaded")
    assert {"users", "sessions", "organizations"} <= set(statuses)


def test_the_configuration_reference_names_every_setting() -> None:
    text = (ROOT / "docs/configuration.md").read_text()
    assert [f for f in FIELDS if f"`{f.upper()}`" not in text] == []


def test_env_example_names_every_setting() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    named = {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}
    assert named == {f.upper() for f in FIELDS}


def test_secrets_are_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_WEBHOOK_SIGNING_SECRET", "whsec_c2VjcmV0c2VjcmV0")
    monkeypatch.setenv("MONGODB_URL", "mongodb://user:pw@db:27017")
    text = repr(load_settings())
    assert "c2VjcmV0c2VjcmV0" not in text
    assert "pw@db" not in text
