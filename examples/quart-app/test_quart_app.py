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
from quart.typing import TestClientProtocol as QuartClient
from quart_app import create_app

from clerk_sync.testing import TEST_SECRET, sample, signed_headers

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
MAYA = json.loads(sample("user.created"))["data"]["id"]
ORG = json.loads(sample("organization.created"))["data"]["id"]


def token(user_id: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": user_id, "sid": "sess_example", "iat": now, "nbf": now, "exp": now + 60}
    return {"Authorization": "Bearer " + jwt.encode(claims, KEY, algorithm="RS256")}


@pytest.fixture
async def client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mongodb_url: str, mongodb_db: str
) -> AsyncIterator[QuartClient]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in {
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": mongodb_db,
        "CLERK_WEBHOOK_SIGNING_SECRET": TEST_SECRET,
        "CLERK_JWT_KEY": PUBLIC_PEM,
        "CLERK_SYNC_PLUGINS": "users,organizations",
        "LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)
    async with create_app().test_app() as app:
        yield app.test_client()


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
