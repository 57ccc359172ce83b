"""Settings: one frozen model read from the environment (and a `.env` file), validated at start."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from clerk_sync.errors import ConfigError
from clerk_sync.whsec import decode_secret

#: What `CLERK_SYNC_WEBHOOK_PATH` may be: an absolute URL path, no query, fragment or variable part.
WEBHOOK_PATH_PATTERN = r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$"
LogFormat = Literal["json", "console"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]


def _split(value: object) -> object:
    """Split a comma- or space-separated string into a tuple of non-empty items."""
    if isinstance(value, str):
        return tuple(item for item in value.replace(",", " ").split() if item)
    return value


def _default_log_format() -> LogFormat:
    return "console" if sys.stderr.isatty() else "json"


class Settings(BaseSettings):
    """Every setting of the service; see docs/configuration.md for each one."""

    # An empty variable counts as unset, for every setting: `env_ignore_empty` lets an empty
    # environment variable fall through to `.env` and then to the default; `_blank_is_unset`
    # drops what is still blank (spaces only, an empty keyword) before any field sees it.
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    clerk_webhook_signing_secret: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    mongodb_url: SecretStr | None = None
    #: development mode (the embedded store) when MONGODB_URL is unset; `serve --dev` sets it too
    clerk_sync_dev: bool = False
    mongodb_db: str = Field(default="clerk_sync", min_length=1)
    clerk_sync_data_dir: Path = Path("./.clerk-sync")
    clerk_sync_plugins: Annotated[tuple[str, ...] | None, NoDecode] = None
    clerk_sync_disabled_plugins: Annotated[tuple[str, ...], NoDecode] = ()
    clerk_sync_required_plugins: Annotated[tuple[str, ...], NoDecode] = ()
    clerk_sync_max_body_bytes: int = Field(default=1_048_576, gt=0)
    clerk_sync_body_timeout: float = Field(default=10.0, gt=0)
    clerk_sync_body_buffer_bytes: int = Field(default=16 * 1_048_576, gt=0)
    clerk_sync_handler_timeout: float = Field(default=10.0, gt=0)
    clerk_sync_event_retention_days: int = Field(default=30, gt=0)
    clerk_sync_shutdown_delay: float = Field(default=5.0, ge=0)
    clerk_sync_stale_sweep_seconds: float = Field(default=30.0, gt=0)
    clerk_sync_outcome_flush_seconds: float = Field(default=0.25, ge=0, le=1)
    clerk_sync_past_due_grace: float = Field(default=0.0, ge=0)
    clerk_sync_webhook_path: str = Field(
        default="/webhooks/clerk", max_length=200, pattern=WEBHOOK_PATH_PATTERN
    )
    clerk_jwt_key: SecretStr | None = None
    clerk_jwks_url: str | None = None
    clerk_jwks_cache_seconds: float = Field(default=3600.0, gt=0)
    clerk_sync_cursor_secret: SecretStr | None = None
    clerk_issuer: str | None = None
    clerk_authorized_parties: Annotated[tuple[str, ...], NoDecode] = ()
    clerk_secret_key: SecretStr | None = None
    clerk_api_url: str = "https://api.clerk.com"
    clerk_sync_console_users: Annotated[tuple[str, ...], NoDecode] = ()
    clerk_sync_console_org: str | None = None
    clerk_sync_grafana_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    log_level: LogLevel = "info"
    log_format: LogFormat = Field(default_factory=_default_log_format)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, values: object) -> object:
        if not isinstance(values, dict):
            return values
        return {k: v for k, v in values.items() if not (isinstance(v, str) and not v.strip())}

    @field_validator(
        "clerk_sync_plugins",
        "clerk_sync_disabled_plugins",
        "clerk_sync_required_plugins",
        "clerk_authorized_parties",
        "clerk_sync_console_users",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        return _split(value)

    @field_validator("clerk_webhook_signing_secret", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        return _split(value)

    @field_validator("clerk_webhook_signing_secret")
    @classmethod
    def _secrets_are_whsec(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for secret in value:
            if not secret.get_secret_value().startswith("whsec_"):
                raise ValueError("each secret must start with 'whsec_'")
            decode_secret(secret.get_secret_value())
        return value

    @field_validator("clerk_sync_console_users", "clerk_sync_console_org")
    @classmethod
    def _console_needs_session_keys(cls, value: object, info: ValidationInfo) -> object:
        """Console access is by Clerk session token: without a key nothing could be verified."""
        keys = info.data.get("clerk_jwt_key") or info.data.get("clerk_jwks_url")
        if value and not keys:
            raise ValueError("console access needs CLERK_JWT_KEY or CLERK_JWKS_URL to be set")
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def lease_seconds(self) -> float:
        """How long a delivery stays claimed: the handler timeout plus room to record outcomes."""
        return self.clerk_sync_handler_timeout + 5.0

    @property
    def console_access(self) -> bool:
        """Whether console callers are configured (CLERK_SYNC_CONSOLE_USERS or _ORG)."""
        return bool(self.clerk_sync_console_users or self.clerk_sync_console_org)

    @property
    def console_development(self) -> bool:
        """Development mode with no console callers: `/console` for 127.0.0.1, no token."""
        return self.clerk_sync_dev and not self.console_access

    @property
    def console_mounted(self) -> bool:
        return self.console_access or self.console_development

    @property
    def read_api_enabled(self) -> bool:
        return self.clerk_jwt_key is not None or self.clerk_jwks_url is not None


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; turn a validation error into one clear line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise ConfigError(f"invalid configuration: {name}: {first['msg']}") from error
