"""Settings: defaults, list parsing, and one clear line naming the variable on bad input."""

from __future__ import annotations

import pytest

from clerk_sync import ConfigError
from clerk_sync.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.chdir(str(tmp_path))  # no .env of the developer's
    for name in ("CLERK_WEBHOOK_SIGNING_SECRET", "MONGODB_URL", "CLERK_SYNC_HANDLER_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


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


def test_empty_value_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URL", "")
    assert load_settings().mongodb_url is None


def test_secrets_are_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLERK_WEBHOOK_SIGNING_SECRET", "whsec_c2VjcmV0c2VjcmV0")
    monkeypatch.setenv("MONGODB_URL", "mongodb://user:pw@db:27017")
    text = repr(load_settings())
    assert "c2VjcmV0c2VjcmV0" not in text
    assert "pw@db" not in text
