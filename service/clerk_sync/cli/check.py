"""`clerk-sync check`: settings, MongoDB and plugins as the service would find them at start."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import click

from clerk_sync.cli.support import FAILED, OK, USAGE, echo_json, one_line, with_store_or_exit
from clerk_sync.errors import ClerkSyncError, PluginError

if TYPE_CHECKING:
    from clerk_sync.plugins import PluginRecord
    from clerk_sync.settings import Settings

PING_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: which check, and why."""

    check: str
    reason: str


@dataclass(slots=True)
class Report:
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    plugins: list[dict[str, object]] = field(default_factory=list)
    mongodb: str = "not checked"
    refused: bool = False  # `serve` would refuse to start: exit 2, as `serve` does

    def problem(self, check: str, reason: str) -> None:
        self.problems.append(Finding(check, reason))

    def warn(self, check: str, reason: str) -> None:
        self.warnings.append(Finding(check, reason))

    def refuse(self, error: ClerkSyncError) -> None:
        self.refused = True
        self.problem("plugins" if isinstance(error, PluginError) else "settings", str(error))

    @property
    def exit_code(self) -> int:
        return USAGE if self.refused else FAILED if self.problems else OK

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": not self.problems,
            "refused": self.refused,
            "problems": [asdict(p) for p in self.problems],
            "warnings": [asdict(w) for w in self.warnings],
            "mongodb": self.mongodb,
            "plugins": self.plugins,
        }


def check_secrets(settings: Settings, report: Report, *, development: bool = False) -> None:
    """A signing secret must be set (the development server makes its own), and each one must
    decode to an HMAC key."""
    from clerk_sync.cli.devmode import SECRET_FILE, read_dev_secret
    from clerk_sync.webhooks.verify import decode_secret

    secrets = settings.clerk_webhook_signing_secret
    if not secrets and development and read_dev_secret(settings.clerk_sync_data_dir):
        report.warn(
            "settings",
            "CLERK_WEBHOOK_SIGNING_SECRET is not set: the development server signs with "
            f"{settings.clerk_sync_data_dir / SECRET_FILE}",
        )
    elif not secrets:
        report.problem(
            "settings",
            "CLERK_WEBHOOK_SIGNING_SECRET is not set: every webhook would be refused with 503",
        )
    for number, secret in enumerate(secrets, start=1):
        try:
            key = decode_secret(secret.get_secret_value())
        except ValueError as error:
            report.problem(
                "settings",
                f"CLERK_WEBHOOK_SIGNING_SECRET: secret {number} of {len(secrets)}: {error}",
            )
            continue
        if not key:
            report.problem(
                "settings",
                f"CLERK_WEBHOOK_SIGNING_SECRET: secret {number} of {len(secrets)} is empty",
            )


def mongodb_error(settings: Settings, within: float) -> str | None:
    """None when MongoDB answers a ping within `within` seconds, else the reason in one line."""
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    assert settings.mongodb_url is not None
    timeout_ms = int(within * 1000)
    try:
        client: MongoClient[dict[str, object]] = MongoClient(
            settings.mongodb_url.get_secret_value(),
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms,
            appname="clerk-sync-check",
        )
    except (PyMongoError, ValueError, TypeError) as error:
        return f"MONGODB_URL is not a usable MongoDB URL: {one_line(error)}"
    try:
        client.admin.command("ping")
    except PyMongoError as error:
        return f"no answer to ping within {within:g} s: {one_line(error)}"
    finally:
        client.close()
    return None


def check_mongodb(settings: Settings, report: Report, within: float) -> None:
    reason = mongodb_error(settings, within)
    report.mongodb = "up" if reason is None else "down"
    if reason is not None:
        report.problem("mongodb", reason)


def check_plugins(settings: Settings, records: list[PluginRecord], report: Report) -> None:
    """Required plugins loaded (else `refusals` stopped the check); other failures are warnings
    (the service skips them)."""
    report.plugins = [r.as_dict() for r in records]
    for record in _failed(records, exclude=settings.clerk_sync_required_plugins):
        report.warn("plugins", f"{record.error} (not required: the service skips it)")
    if not any(r.status == "loaded" for r in records):
        report.warn("plugins", "no plugin is loaded: every event would be recorded as ignored")


def _failed(records: list[PluginRecord], exclude: tuple[str, ...]) -> list[PluginRecord]:
    return [r for r in records if r.status == "failed" and r.name not in exclude]


def run_checks(within: float = PING_SECONDS) -> Report:
    """Every check. What `serve` refuses stops the others (they depend on it); without
    MONGODB_URL, the store is that of the running development server."""
    from clerk_sync.cli.preflight import refusals
    from clerk_sync.settings import load_settings

    report = Report()
    try:
        settings = load_settings()
        records = refusals(settings)
    except ClerkSyncError as error:
        report.refuse(error)
        return report
    development = settings.mongodb_url is None
    settings = with_store_or_exit(settings)
    check_secrets(settings, report, development=development)
    check_mongodb(settings, report, within)
    check_plugins(settings, records, report)
    return report


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for scripts.")
@click.option(
    "--timeout",
    default=PING_SECONDS,
    show_default=True,
    type=click.FloatRange(0.1, 60),
    help="Seconds MongoDB has to answer a ping.",
)
def check(as_json: bool, timeout: float) -> None:
    """Check settings, MongoDB and plugins as `serve` would find them at start.

    Runs the very checks `serve` runs before it starts (every setting, CLERK_JWT_KEY and
    CLERK_JWKS_URL, MONGODB_URL's form, required plugins), then checks that a signing secret
    is set and that MongoDB answers a ping within the timeout. Without MONGODB_URL it checks
    the store of the `clerk-sync serve` running on CLERK_SYNC_DATA_DIR. Prints one line per
    problem (and per warning).

    Exit status: 0 when all is well (warnings allowed), 1 when a check found a problem
    (MongoDB does not answer, no signing secret), 2 when `serve` would refuse to start
    (the line names the setting or the required plugin).
    """
    report = run_checks(timeout)
    if as_json:
        echo_json(report.as_dict())
    else:
        for finding in report.problems:
            click.echo(f"problem: {finding.check}: {finding.reason}")
        for finding in report.warnings:
            click.echo(f"warning: {finding.check}: {finding.reason}", err=True)
        if not report.problems:
            loaded = [str(p["name"]) for p in report.plugins if p["status"] == "loaded"]
            plugins = f"{', '.join(loaded) or 'none'} loaded"
            click.echo(f"ok: settings, mongodb ({report.mongodb}), plugins ({plugins})")
    sys.exit(report.exit_code)
