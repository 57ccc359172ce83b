"""What `clerk-sync serve` refuses before it starts; `clerk-sync check` runs the same code."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from clerk_sync.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from clerk_sync.plugins import PluginRecord
    from clerk_sync.settings import Settings

MONGODB_SCHEMES = ("mongodb://", "mongodb+srv://")
#: why `serve` refuses to start with no MONGODB_URL when development mode was not chosen
NO_MONGODB_URL = (
    "invalid configuration: MONGODB_URL: not set (or blank): set it to your MongoDB server's "
    "mongodb:// URL, or choose development mode with its embedded store "
    "(clerk-sync serve --dev, make run, or CLERK_SYNC_DEV=1)"
)


def refusals(settings: Settings) -> list[PluginRecord]:
    """Raise ConfigError (or PluginError) naming what `serve` would refuse; else the plugins.

    Settings that do not validate never get here: `load_settings` refuses them first."""
    from clerk_sync.plugins import discover, load_plugins, require

    check_mongodb_url(settings)
    if settings.read_api_enabled:
        from clerk_sync.auth.tokens import build_verifier

        build_verifier(settings)  # a bad CLERK_JWT_KEY or CLERK_JWKS_URL fails here
    records = load_plugins(discover(), settings)
    try:
        require(records, settings.clerk_sync_required_plugins)
    except PluginError as error:
        raise PluginError(f"CLERK_SYNC_REQUIRED_PLUGINS: {error}") from error
    return records


def development_chosen(settings: Settings) -> bool:
    """Whether `serve` runs development mode: only with no MONGODB_URL *and* it chosen.

    A blank MONGODB_URL (a Secret with a misnamed key, a value of spaces) counts as unset, and
    without `--dev` or CLERK_SYNC_DEV=1 that is a refusal, never an embedded store in production.
    """
    if settings.mongodb_url is not None:
        return False
    if not settings.clerk_sync_dev:
        raise ConfigError(NO_MONGODB_URL)
    return True


def check_mongodb_url(settings: Settings) -> None:
    """A MONGODB_URL pymongo cannot parse is refused at start, not in every worker later."""
    if settings.mongodb_url is None:
        return
    url = settings.mongodb_url.get_secret_value()
    if not url.startswith(MONGODB_SCHEMES):
        raise ConfigError(
            "invalid configuration: MONGODB_URL: must start with mongodb:// or mongodb+srv://"
        )
    if url.startswith("mongodb+srv://"):
        return  # parsing an SRV URL resolves DNS: left to the driver at connection time
    from pymongo.errors import ConfigurationError, InvalidURI
    from pymongo.uri_parser import parse_uri

    try:
        with warnings.catch_warnings():  # the driver only warns about unknown options, as here
            warnings.simplefilter("ignore")
            parse_uri(url, warn=True)
    except (InvalidURI, ConfigurationError, ValueError) as error:
        reason = str(error).replace(url, "<MONGODB_URL>")
        raise ConfigError(f"invalid configuration: MONGODB_URL: {reason}") from error
