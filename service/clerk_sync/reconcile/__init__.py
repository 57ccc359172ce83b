"""Reconcile MongoDB with Clerk's Backend API: the safety net for lost or failed webhooks.

Every object listed by the Backend API goes through the same projection functions and the same
order-safe write (`upsert_if_newer`) as a webhook, so a reconcile racing a webhook can never leave
the older version behind, and tombstones stay final. Objects live in MongoDB but absent from a
*complete* listing are checked once more by id and tombstoned only when Clerk answers that they
are gone. Progress is checkpointed per resource in `reconcile_state`, so an interrupted run resumes
where it stopped; documents seen by a run carry its id in `last_reconciled_run`.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx
from clerk_backend_api import Clerk
from clerk_backend_api.models import (
    ClerkBaseError,
    NoResponseError,
    OrganizationMemberships,
    Organizations,
)
from clerk_backend_api.utils import BackoffStrategy, RetryConfig
from pymongo.errors import PyMongoError

from clerk_sync.events import timestamp_from_clerk
from clerk_sync.storage.projection import tombstone, upsert_if_newer

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection, AsyncIOMotorDatabase
    from pydantic import BaseModel

type Database = AsyncIOMotorDatabase[dict[str, Any]]
type Collection = AsyncIOMotorCollection[dict[str, Any]]
type Sleep = Callable[[float], Awaitable[None]]
type Outcome = Literal["created", "updated", "unchanged", "tombstoned", "failed"]
type Page = tuple[list[dict[str, Any]], int | None]
type DiffKind = Literal["missing", "older", "differs", "newer-in-db", "deleted-in-db", "gone"]

RESOURCES: tuple[str, ...] = ("users", "organizations", "memberships")
OUTCOMES: tuple[Outcome, ...] = ("created", "updated", "unchanged", "tombstoned", "failed")
STATE_COLLECTION = "reconcile_state"

# clerk-backend-api 7.0.0 reads every field of a request model when building the query string,
# deprecated ones included (GetUserListRequest.last_active_at_since): a DeprecationWarning on every
# users list that is the SDK's business, not the operator's
warnings.filterwarnings(
    "ignore", category=DeprecationWarning, module=r"clerk_backend_api\.utils\.queryparams"
)
MARKER = "last_reconciled_run"
MAX_PAGE_SIZE = 500


class ReconcileError(Exception):
    """The Backend API could not be listed completely (after retries)."""


# ---------------------------------------------------------------------------------------------
# The Backend API: the official SDK, with 429 and 5xx handling of our own


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait: 5xx and transport errors back off exponentially,
    429 waits `Retry-After` (else the same backoff), each with its own attempt budget."""

    max_attempts: int = 5
    max_rate_limited: int = 10
    base_delay: float = 0.5
    max_delay: float = 60.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class ClerkClient:
    """Clerk's Backend API through the official SDK (`clerk-backend-api`), with our retries.

    The SDK's own retries are switched off: 429 (`Retry-After`), 5xx and connection errors are
    handled here so that a run can give up, keep its checkpoint and report why. Answers come
    back as the SDK's models and are dumped to the JSON shape webhooks deliver, which is what
    the projection functions take. A 404 on a single object answers None.
    """

    def __init__(
        self,
        base_url: str,
        secret_key: str,
        *,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._sdk = Clerk(
            bearer_auth=secret_key,
            server_url=base_url.rstrip("/") + "/v1",
            async_client=self._http,
            retry_config=RetryConfig("none", BackoffStrategy(0, 0, 1.0, 0), False),
            timeout_ms=int(timeout * 1000),
        )
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.requests = 0
        self.rate_limited = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    def _backoff(self, attempt: int) -> float:
        delay: float = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
        return delay * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not cryptography

    async def call[T](self, what: str, operation: Callable[[], Awaitable[T]]) -> T | None:
        """Run one SDK call with the retry policy; None on 404; raises ReconcileError."""
        failures = limited = 0
        while True:
            self.requests += 1
            try:
                return await operation()
            except (httpx.TransportError, NoResponseError) as error:
                failures += 1
                if failures >= self.retry.max_attempts:
                    raise ReconcileError(f"{what}: {type(error).__name__}") from error
                await self._sleep(self._backoff(failures))
                continue
            except ClerkBaseError as error:
                status = error.status_code
                if 200 <= status < 300:  # ResponseValidationError: the SDK could not read it
                    reason = str(error).splitlines()[0][:300]
                    raise ReconcileError(f"{what}: unreadable answer: {reason}") from error
                if status == 404:
                    return None
                if status == 429:
                    limited += 1
                    self.rate_limited += 1
                    if limited >= self.retry.max_rate_limited:
                        raise ReconcileError(
                            f"{what}: still rate limited after {limited} tries"
                        ) from error
                    wait = retry_after_seconds(error.headers.get("Retry-After"))
                    wait = self._backoff(limited) if wait is None else wait
                    await self._sleep(min(wait, self.retry.max_delay))
                    continue
                if status >= 500:
                    failures += 1
                    if failures >= self.retry.max_attempts:
                        raise ReconcileError(
                            f"{what}: HTTP {status} after {failures} tries"
                        ) from error
                    await self._sleep(self._backoff(failures))
                    continue
                raise ReconcileError(f"{what}: HTTP {status}") from error

    async def _listing[T](self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """A list call: a 404 means a wrong `CLERK_API_URL`, never an empty list (an empty
        listing taken as complete would tombstone everything)."""
        listed = await self.call(what, operation)
        if listed is None:
            raise ReconcileError(f"{what}: HTTP 404")
        return listed

    async def page(self, resource: str, *, offset: int, limit: int) -> Page:
        """One page of a resource's list, oldest first: the objects and `total_count` when the
        endpoint gives one (the users list does not)."""
        order = "+created_at"  # new objects append at the end, so offsets stay valid
        listed: Organizations | OrganizationMemberships
        if resource == "users":
            users = await self._listing(
                "GET /v1/users",
                lambda: self._sdk.users.list_async(
                    request={"limit": limit, "offset": offset, "order_by": order}
                ),
            )
            return [_json(user) for user in users], None
        if resource == "organizations":
            listed = await self._listing(
                "GET /v1/organizations",
                lambda: self._sdk.organizations.list_async(
                    limit=limit, offset=offset, order_by=order
                ),
            )
        elif resource == "memberships":
            listed = await self._listing(
                "GET /v1/organization_memberships",
                lambda: self._sdk.users.get_instance_organization_memberships_async(
                    limit=limit, offset=offset, order_by=order
                ),
            )
        else:
            raise ValueError(f"unknown resource {resource!r}")
        return [_json(item) for item in listed.data], listed.total_count

    async def user(self, user_id: str) -> dict[str, Any] | None:
        found = await self.call(
            f"GET /v1/users/{user_id}", lambda: self._sdk.users.get_async(user_id=user_id)
        )
        return None if found is None else _json(found)

    async def organization(self, organization_id: str) -> dict[str, Any] | None:
        found = await self.call(
            f"GET /v1/organizations/{organization_id}",
            lambda: self._sdk.organizations.get_async(organization_id=organization_id),
        )
        return None if found is None else _json(found)

    async def membership(
        self, organization_id: str, user_id: str, membership_id: str
    ) -> dict[str, Any] | None:
        """Memberships have no single-object endpoint: list the organization's for that user."""
        found = await self.call(
            f"GET /v1/organizations/{organization_id}/memberships",
            lambda: self._sdk.organization_memberships.list_async(
                organization_id=organization_id, user_id=[user_id], limit=MAX_PAGE_SIZE
            ),
        )
        items = [] if found is None else [_json(m) for m in found.data]
        return next((item for item in items if item.get("id") == membership_id), None)


def _json(model: BaseModel) -> dict[str, Any]:
    """An SDK model as the JSON object Clerk sent (the shape webhooks deliver)."""
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return dumped


# ---------------------------------------------------------------------------------------------
# Resources: where each is listed, how it is projected, how a single object is re-checked


@dataclass(frozen=True)
class Resource:
    name: str
    collection: str
    project: Callable[[dict[str, Any]], dict[str, Any]]
    cleared: Mapping[str, Any]
    #: the current Clerk object for a stored document, None when Clerk says it is gone
    fetch_one: Callable[[ClerkClient, Mapping[str, Any]], Awaitable[dict[str, Any] | None]]


async def _fetch_user(client: ClerkClient, doc: Mapping[str, Any]) -> dict[str, Any] | None:
    return await client.user(doc["clerk_id"])


async def _fetch_organization(client: ClerkClient, doc: Mapping[str, Any]) -> dict[str, Any] | None:
    return await client.organization(doc["clerk_id"])


async def _fetch_membership(client: ClerkClient, doc: Mapping[str, Any]) -> dict[str, Any] | None:
    organization_id, user_id = doc.get("organization_id"), doc.get("user_id")
    if not isinstance(organization_id, str) or not isinstance(user_id, str):
        return None
    return await client.membership(organization_id, user_id, doc["clerk_id"])


def resources() -> dict[str, Resource]:
    """The reconcilable resources, projected by the built-in plugins' own functions."""
    from clerk_sync_organizations.fields import (
        MEMBERSHIP_CLEARED,
        ORGANIZATION_CLEARED,
        project_membership,
        project_organization,
    )
    from clerk_sync_users import SCRUBBED, project_user

    return {
        "users": Resource("users", "users", project_user, SCRUBBED, _fetch_user),
        "organizations": Resource(
            "organizations",
            "organizations",
            project_organization,
            ORGANIZATION_CLEARED,
            _fetch_organization,
        ),
        "memberships": Resource(
            "memberships",
            "organization_memberships",
            project_membership,
            MEMBERSHIP_CLEARED,
            _fetch_membership,
        ),
    }


async def ensure_indexes(db: Database) -> None:
    """The plugins' indexes (the unique `clerk_id` ones make `upsert_if_newer` safe)."""
    from clerk_sync_organizations.models import Membership, Organization
    from clerk_sync_users import User
    from odmantic import AIOEngine, Model

    models: list[type[Model]] = [User, Organization, Membership]
    engine = AIOEngine(client=db.client, database=db.name)
    await engine.configure_database(models, update_existing_indexes=True)


# ---------------------------------------------------------------------------------------------
# Reports


@dataclass
class Difference:
    resource: str
    clerk_id: str
    kind: DiffKind
    clerk_updated_at: datetime | None = None
    db_updated_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "clerk_id": self.clerk_id,
            "kind": self.kind,
            "clerk_updated_at": self.clerk_updated_at,
            "db_updated_at": self.db_updated_at,
        }


@dataclass
class ResourceReport:
    resource: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    complete: bool = False
    tombstoning: Literal["done", "skipped", "refused", "not-reached"] = "not-reached"
    resumed_from: int | None = None
    pages: int = 0
    listed: int = 0
    error: str | None = None
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.complete and self.counts["failed"] == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "ok": self.ok,
            "counts": self.counts,
            "complete": self.complete,
            "tombstoning": self.tombstoning,
            "resumed_from": self.resumed_from,
            "pages": self.pages,
            "listed": self.listed,
            "error": self.error,
        }


@dataclass
class Report:
    dry_run: bool
    started_at: datetime
    duration_seconds: float = 0.0
    requests: int = 0
    rate_limited: int = 0
    resources: list[ResourceReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.resources)

    @property
    def differences(self) -> list[Difference]:
        return [d for r in self.resources for d in r.differences]

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "started_at": self.started_at,
            "duration_seconds": round(self.duration_seconds, 3),
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "resources": [r.as_dict() for r in self.resources],
        }
        if self.dry_run:
            result["differences"] = [d.as_dict() for d in self.differences]
        return result


@dataclass(frozen=True)
class Options:
    resources: tuple[str, ...] = RESOURCES
    since: datetime | None = None
    dry_run: bool = False
    page_size: int = 100
    restart: bool = False
    #: refuse to tombstone more than this fraction of the live documents (a wrong instance key
    #: lists nothing, which must not empty the database); only checked above 20 candidates
    max_tombstone_fraction: float = 0.5
    progress: Callable[[str], None] | None = None


# ---------------------------------------------------------------------------------------------
# The run


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def classify(
    existing: Mapping[str, Any] | None, fields: Mapping[str, Any], updated_at: datetime | None
) -> DiffKind | None:
    """How the stored document differs from Clerk's object; None when it matches."""
    if existing is None:
        return "missing"
    if existing.get("deleted") is True:
        return "deleted-in-db"
    stored = _aware(existing.get("updated_at"))
    if stored is not None and updated_at is not None and stored > updated_at:
        return "newer-in-db"
    if updated_at is not None and (stored is None or stored < updated_at):
        return "older"
    if any(_aware(existing.get(name)) != value for name, value in fields.items()):
        return "differs"
    return None


_OUTCOME_OF: dict[DiffKind | None, Outcome] = {
    None: "unchanged",
    "missing": "created",
    "older": "updated",
    "differs": "updated",
    "newer-in-db": "unchanged",
    "deleted-in-db": "unchanged",
}


class _Run:
    def __init__(
        self, db: Database, client: ClerkClient, options: Options, now: Callable[[], datetime]
    ) -> None:
        self.db, self.client, self.options, self.now = db, client, options, now
        self.specs = resources()

    def say(self, message: str) -> None:
        if self.options.progress is not None:
            self.options.progress(message)

    async def apply(
        self,
        spec: Resource,
        obj: dict[str, Any],
        existing: Mapping[str, Any] | None,
        report: ResourceReport,
    ) -> None:
        """Compare one Clerk object with its document and write it the way a webhook would."""
        clerk_id = obj.get("id")
        if not isinstance(clerk_id, str):
            report.counts["failed"] += 1
            return
        updated_at = timestamp_from_clerk(obj.get("updated_at"))
        since = self.options.since
        if since is not None and updated_at is not None and updated_at < since:
            report.counts["unchanged"] += 1
            return
        fields = spec.project(obj)
        kind = classify(existing, fields, updated_at)
        outcome = _OUTCOME_OF[kind]
        if kind is not None:
            db_updated = _aware(existing.get("updated_at")) if existing else None
            if self.options.dry_run:
                report.differences.append(
                    Difference(spec.name, clerk_id, kind, updated_at, db_updated)
                )
        if self.options.dry_run or outcome == "unchanged":
            report.counts[outcome] += 1
            return
        collection = self.db[spec.collection]
        try:
            applied = await upsert_if_newer(collection, clerk_id, fields, updated_at)
            if spec.name == "memberships":
                await self._follow_parents(collection, clerk_id, fields)
        except PyMongoError:
            report.counts["failed"] += 1
            return
        # "stale": a webhook stored a newer version (or a tombstone) after we read the document
        report.counts[outcome if applied == "applied" else "unchanged"] += 1

    async def _follow_parents(
        self, memberships: Collection, clerk_id: str, fields: Mapping[str, Any]
    ) -> None:
        """As the webhook handler does: a membership of a deleted org or user is deleted too."""
        for collection, parent_id in (
            ("organizations", fields.get("organization_id")),
            ("users", fields.get("user_id")),
        ):
            if not isinstance(parent_id, str):
                continue
            parent = await self.db[collection].find_one({"clerk_id": parent_id, "deleted": True})
            if parent is not None:
                await tombstone(
                    memberships,
                    {"clerk_id": clerk_id},
                    deleted_at=parent.get("deleted_at"),
                    cleared=self.specs["memberships"].cleared,
                )

    async def resource(self, spec: Resource) -> ResourceReport:
        report = ResourceReport(spec.name)
        state = self.db[STATE_COLLECTION]
        dry = self.options.dry_run
        since = self.options.since
        run_id, offset, status = uuid.uuid4().hex, 0, "listing"
        if not dry:
            checkpoint = await state.find_one({"_id": spec.name})
            resumable = (
                checkpoint is not None
                and checkpoint.get("status") in ("listing", "listed")
                and _aware(checkpoint.get("since")) == since
                and not self.options.restart
            )
            if resumable:
                assert checkpoint is not None
                run_id, offset = checkpoint["run_id"], int(checkpoint.get("offset", 0))
                status = checkpoint["status"]
                report.resumed_from = offset
                for name, value in (checkpoint.get("counts") or {}).items():
                    if name in report.counts and isinstance(value, int):
                        report.counts[name] = value
                self.say(f"{spec.name}: resuming run {run_id[:8]} at offset {offset}")
            else:
                await state.replace_one(
                    {"_id": spec.name},
                    {
                        "resource": spec.name,
                        "run_id": run_id,
                        "status": status,
                        "offset": 0,
                        "since": since,
                        "started_at": self.now(),
                        "updated_at": self.now(),
                        "counts": report.counts,
                    },
                    upsert=True,
                )
        seen: set[str] = set()
        collection = self.db[spec.collection]
        limit = self.options.page_size
        try:
            while status == "listing":
                items, total = await self.client.page(spec.name, offset=offset, limit=limit)
                report.pages += 1
                report.listed += len(items)
                ids = [item["id"] for item in items if isinstance(item.get("id"), str)]
                existing = {
                    doc["clerk_id"]: doc
                    async for doc in collection.find({"clerk_id": {"$in": ids}})
                }
                for item in items:
                    await self.apply(spec, item, existing.get(item.get("id")), report)
                offset += len(items)
                done = len(items) < limit or (total is not None and offset >= total)
                seen.update(ids)
                if not dry:
                    await collection.update_many(
                        {"clerk_id": {"$in": ids}}, {"$set": {MARKER: run_id}}
                    )
                    status = "listed" if done else "listing"
                    await state.update_one(
                        {"_id": spec.name},
                        {
                            "$set": {
                                "offset": offset,
                                "status": status,
                                "counts": report.counts,
                                "updated_at": self.now(),
                            }
                        },
                    )
                elif done:
                    status = "listed"
                of = f"/{total}" if total is not None else ""
                self.say(f"{spec.name}: page {report.pages}, {offset}{of} objects")
            report.complete = True
            if since is not None:
                report.tombstoning = "skipped"  # a --since run does not compare every object
            else:
                await self._tombstone_gone(spec, run_id, seen, report)
        except (ReconcileError, PyMongoError) as error:
            report.error = str(error)
            self.say(f"{spec.name}: stopped: {report.error}")
            return report
        if not dry:
            await state.update_one(
                {"_id": spec.name},
                {"$set": {"status": "done", "counts": report.counts, "finished_at": self.now()}},
            )
        return report

    async def _tombstone_gone(
        self, spec: Resource, run_id: str, seen: set[str], report: ResourceReport
    ) -> None:
        """Live documents the complete listing did not contain: re-check each, then tombstone."""
        collection = self.db[spec.collection]
        live = {"deleted": {"$ne": True}}
        if self.options.dry_run:
            candidates = [
                doc async for doc in collection.find(live) if doc.get("clerk_id") not in seen
            ]
        else:
            candidates = [doc async for doc in collection.find({**live, MARKER: {"$ne": run_id}})]
        live_count = await collection.count_documents(live)
        if len(candidates) > 20 and len(candidates) > self.options.max_tombstone_fraction * max(
            live_count, 1
        ):
            report.tombstoning = "refused"
            raise ReconcileError(
                f"{len(candidates)} of {live_count} live {spec.name} are absent from Clerk: "
                "refusing to tombstone (wrong CLERK_SECRET_KEY instance?)"
            )
        for doc in candidates:
            clerk_id = doc.get("clerk_id")
            if not isinstance(clerk_id, str):
                continue
            current = await spec.fetch_one(self.client, doc)
            if current is not None:  # the listing missed it (pages shifted) or it is new
                await self.apply(spec, current, doc, report)
                if not self.options.dry_run:
                    await collection.update_one({"clerk_id": clerk_id}, {"$set": {MARKER: run_id}})
                continue
            if self.options.dry_run:
                db_updated = _aware(doc.get("updated_at"))
                report.differences.append(Difference(spec.name, clerk_id, "gone", None, db_updated))
                report.counts["tombstoned"] += 1
                continue
            changed = await tombstone(
                collection,
                {"clerk_id": clerk_id, **live, MARKER: {"$ne": run_id}},
                deleted_at=self.now(),
                cleared=spec.cleared,
            )
            if changed:
                report.counts["tombstoned"] += 1
                await self._cascade(spec.name, clerk_id)
        report.tombstoning = "done"

    async def _cascade(self, resource: str, clerk_id: str) -> None:
        """Like the webhook handlers: a deleted org or user takes its memberships with it."""
        key = {"organizations": "organization_id", "users": "user_id"}.get(resource)
        if key is None:
            return
        await tombstone(
            self.db["organization_memberships"],
            {key: clerk_id},
            deleted_at=self.now(),
            cleared=self.specs["memberships"].cleared,
            many=True,
        )


async def reconcile(
    db: Database,
    client: ClerkClient,
    options: Options,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Report:
    """Reconcile the chosen resources in order (users, organizations, memberships)."""
    started = time.monotonic()
    report = Report(dry_run=options.dry_run, started_at=now())
    run = _Run(db, client, options, now)
    if not options.dry_run:
        await ensure_indexes(db)
    for name in RESOURCES:
        if name in options.resources:
            report.resources.append(await run.resource(run.specs[name]))
    report.duration_seconds = time.monotonic() - started
    report.requests, report.rate_limited = client.requests, client.rate_limited
    return report


async def run_reconcile(
    mongodb_url: str,
    database: str,
    api_url: str,
    secret_key: str,
    options: Options,
    *,
    sleep: Sleep = asyncio.sleep,
    retry: RetryPolicy | None = None,
) -> Report:
    """Open MongoDB and the Backend API client, reconcile, close both."""
    from motor.motor_asyncio import AsyncIOMotorClient

    mongo: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        mongodb_url, tz_aware=True, appname="clerk-sync-reconcile"
    )
    client = ClerkClient(api_url, secret_key, sleep=sleep, retry=retry)
    try:
        return await reconcile(mongo[database], client, options)
    finally:
        await client.aclose()
        mongo.close()


# ---------------------------------------------------------------------------------------------
# Metrics of the last run: a node-exporter textfile and/or a Pushgateway

LAST_SUCCESS = "clerk_sync_reconcile_last_success_timestamp_seconds"


def metrics_registry(report: Report, last_success: float | None) -> Any:
    """A registry with the run's metrics; `last_success` is left out when None."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    objects = Gauge(
        "clerk_sync_reconcile_objects",
        "Objects by outcome in the last reconcile run",
        ["resource", "outcome"],
        registry=registry,
    )
    for resource in report.resources:
        for outcome, count in resource.counts.items():
            objects.labels(resource.resource, outcome).set(count)
    Gauge(
        "clerk_sync_reconcile_duration_seconds",
        "Wall time of the last reconcile run",
        registry=registry,
    ).set(report.duration_seconds)
    Gauge(
        "clerk_sync_reconcile_last_run_success",
        "1 when the last reconcile run completed without failures, else 0",
        registry=registry,
    ).set(1 if report.ok else 0)
    if last_success is not None:
        Gauge(LAST_SUCCESS, "Unix time of the last successful reconcile", registry=registry).set(
            last_success
        )
    return registry


def previous_last_success(path: str) -> float | None:
    """The last-success timestamp a previous run wrote into the textfile, if any."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return float(sample.value)
    except ValueError:
        return None
    return None


def write_metrics(
    report: Report,
    *,
    metrics_file: str | None = None,
    pushgateway: str | None = None,
    job: str = "clerk-sync-reconcile",
    grouping_key: Mapping[str, str] | None = None,
    finished_at: float | None = None,
) -> None:
    """Write the textfile (atomically) and/or push; a failed run keeps the last success time."""
    from prometheus_client import push_to_gateway, pushadd_to_gateway, write_to_textfile

    finished = time.time() if finished_at is None else finished_at
    if metrics_file is not None:
        last = finished if report.ok else previous_last_success(metrics_file)
        write_to_textfile(metrics_file, metrics_registry(report, last))
    if pushgateway is not None:
        key = dict(grouping_key or {})
        if report.ok:
            push_to_gateway(
                pushgateway, job=job, registry=metrics_registry(report, finished), grouping_key=key
            )
        else:  # POST replaces only the metrics sent, so the last success time stays
            pushadd_to_gateway(
                pushgateway, job=job, registry=metrics_registry(report, None), grouping_key=key
            )


def iter_lines(report: Report) -> Iterable[str]:
    """The human summary: one line per resource, then the differences of a dry run."""
    for r in report.resources:
        counts = " ".join(f"{name}={r.counts[name]}" for name in OUTCOMES)
        state = "ok" if r.ok else ("incomplete" if not r.complete else "failed")
        resumed = f" resumed@{r.resumed_from}" if r.resumed_from is not None else ""
        line = f"{r.resource:<14} {state:<10} {counts} pages={r.pages}{resumed}"
        if r.tombstoning != "done":
            line += f" tombstoning={r.tombstoning}"
        yield line + (f" error={r.error}" if r.error else "")
    for d in report.differences:
        yield (
            f"  {d.kind:<13} {d.resource:<14} {d.clerk_id}"
            f" clerk={d.clerk_updated_at} db={d.db_updated_at}"
        )
