"""The example app's own routes: signed Clerk webhooks sync the users and memberships they read.

Tokens are signed here with a key of the test's own, as Clerk signs session tokens (RS256); the
app gets its public key as CLERK_JWT_KEY. MongoDB is the test run's (the `mongodb_url` and
`mongodb_db` fixtures of clerk-sync's pytest plugin).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from motor.motor_asyncio import AsyncIOMotorClient
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient
from quart_app import create_app, users_on_pro

from clerk_sync.testing import TEST_SECRET, sample, signed_headers

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
MAYA = json.loads(sample("user.created"))["data"]["id"]
ORG = json.loads(sample("organization.created"))["data"]["id"]
PRO = json.loads(sample("subscriptionItem.active"))["data"]["plan"]  # Maya's plan in the samples


def token(user_id: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": user_id, "sid": "sess_example", "iat": now, "nbf": now, "exp": now + 60}
    return {"Authorization": "Bearer " + jwt.encode(claims, KEY, algorithm="RS256")}


@pytest.fixture
async def app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mongodb_url: str, mongodb_db: str
) -> AsyncIterator[Quart]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in {
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": mongodb_db,
        "CLERK_WEBHOOK_SIGNING_SECRET": TEST_SECRET,
        "CLERK_JWT_KEY": PUBLIC_PEM,
        "CLERK_SYNC_PLUGINS": "users,organizations,billing",
        "LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)
    app = create_app()
    async with app.test_app():  # runs start-up and shut-down
        yield app


@pytest.fixture
def client(app: Quart) -> QuartClient:
    return app.test_client()


async def deliver(client: QuartClient, event_type: str) -> Any:
    body = sample(event_type)
    answer = await client.post("/webhooks/clerk", data=body, headers=signed_headers(body))
    return (await answer.get_json())["status"]


async def test_profile_needs_a_session_and_shows_the_synced_user(client: QuartClient) -> None:
    anonymous = await client.get("/profile")
    before = await client.get("/profile", headers=token(MAYA))
    assert await deliver(client, "user.created") == "processed"
    after = await client.get("/profile", headers=token(MAYA))
    assert (anonymous.status_code, (await anonymous.get_json())["reason"]) == (401, "token_missing")
    assert await before.get_json() == {"user_id": MAYA, "synced": False}
    assert await after.get_json() == {"user_id": MAYA, "synced": True, "first_name": "Maya"}


async def test_organization_settings_are_for_its_admins_only(client: QuartClient) -> None:
    for event_type in ("user.created", "organization.created", "organizationMembership.created"):
        assert await deliver(client, event_type) == "processed"
    admin = await client.get(f"/orgs/{ORG}/settings", headers=token(MAYA))
    outsider = await client.get(f"/orgs/{ORG}/settings", headers=token("user_2outsider"))
    home = await client.get("/")
    assert await admin.get_json() == {"org_id": ORG, "editable_by": MAYA}
    assert (outsider.status_code, (await outsider.get_json())["reason"]) == (403, "not_a_member")
    assert await home.get_data(as_text=True) == "Northwind"


async def test_a_paid_route_needs_the_plan_and_a_job_sees_the_same(
    app: Quart, client: QuartClient
) -> None:
    before = await client.get("/reports", headers=token(MAYA))
    assert await deliver(client, "subscriptionItem.active") == "processed"
    after = await client.get("/reports", headers=token(MAYA))
    other = await client.get("/reports", headers=token("user_2outsider"))
    assert (before.status_code, (await before.get_json())["reason"]) == (403, "plan_required")
    assert await after.get_json() == {"plan": "pro", "user_id": MAYA}
    assert other.status_code == 403
    assert await users_on_pro(app, [MAYA, "user_2outsider"]) == [MAYA]


@pytest.fixture
async def plans(mongodb_url: str, mongodb_db: str) -> AsyncIterator[Any]:
    """`billing_plans`, which `clerk-sync reconcile` fills from the Backend API (Clerk sends
    no plan webhooks); the test stores a plan as it would."""
    mongo: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(mongodb_url)
    try:
        yield mongo[mongodb_db].billing_plans
    finally:
        mongo.close()


async def test_a_feature_flag_follows_the_plans_features(client: QuartClient, plans: Any) -> None:
    assert await deliver(client, "subscriptionItem.active") == "processed"
    await plans.insert_one({"clerk_id": PRO["id"], "slug": PRO["slug"], "features": []})
    without = await client.get("/exports.csv", headers=token(MAYA))
    await plans.update_one({"clerk_id": PRO["id"]}, {"$set": {"features": ["csv_exports"]}})
    granted = await client.get("/exports.csv", headers=token(MAYA))
    assert (without.status_code, (await without.get_json())["reason"]) == (403, "feature_required")
    assert (granted.status_code, await granted.get_data(as_text=True)) == (200, "id,total\n")


async def test_the_members_list_needs_the_permission(client: QuartClient) -> None:
    """Maya's membership in the samples carries `org:sys_memberships:read`."""
    for event_type in ("user.created", "organization.created", "organizationMembership.created"):
        assert await deliver(client, event_type) == "processed"
    member = await client.get(f"/orgs/{ORG}/members", headers=token(MAYA))
    outsider = await client.get(f"/orgs/{ORG}/members", headers=token("user_2outsider"))
    assert await member.get_json() == {"org_id": ORG, "readable_by": MAYA}
    assert (outsider.status_code, (await outsider.get_json())["reason"]) == (403, "not_a_member")
