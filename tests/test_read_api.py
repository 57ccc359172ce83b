"""The read API: the caller's user, their organizations, and members of their organizations."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from clerk_sync_organizations import plugin as organizations_plugin
from clerk_sync_users import plugin as users_plugin

from clerk_sync.auth.cursor import cursor_key, decode_cursor, encode_cursor, parse_limit
from clerk_sync.errors import ApiError
from clerk_sync.testing import sample
from tests.conftest import Runner, Running
from tests.test_auth import ISSUER, USER_ID, bearer, signer

CREATED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ORG = "org_2northwind0000000000000000"
OTHER_ORG = "org_2contoso00000000000000000"


def user(clerk_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "clerk_id": clerk_id,
        "email": f"{clerk_id}@northwind.example",
        "first_name": clerk_id[-4:],
        "last_name": "Tester",
        "username": None,
        "image_url": None,
        "public_metadata": {"plan": "pro"},
        "private_metadata": {"stripe_customer": "cus_secret"},
        "unsafe_metadata": {},
        "created_at": CREATED,
        "updated_at": CREATED,
        "deleted": False,
        "deleted_at": None,
        **fields,
    }


def organization(clerk_id: str, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "clerk_id": clerk_id,
        "name": name,
        "slug": name.lower(),
        "image_url": f"https://img.clerk.com/{name.lower()}.png",
        "members_count": 0,
        "public_metadata": {},
        "private_metadata": {"billing": "secret"},
        "created_at": CREATED,
        "updated_at": CREATED,
        "deleted": False,
        "deleted_at": None,
        **fields,
    }


def membership(org_id: str, user_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "clerk_id": f"orgmem_{org_id[-6:]}_{user_id[-6:]}",
        "organization_id": org_id,
        "user_id": user_id,
        "role": "org:member",
        "permissions": ["org:sys_memberships:read"],
        "public_metadata": {},
        "created_at": CREATED,
        "updated_at": CREATED,
        "deleted": False,
        "deleted_at": None,
        **fields,
    }


def token(user_id: str = USER_ID) -> dict[str, str]:
    return bearer(signer("ins_key_one").token(sub=user_id))


@asynccontextmanager
async def read_api(running: Runner, **overrides: Any) -> AsyncIterator[Running]:
    async with running(clerk_jwt_key=signer("ins_key_one").pem, **overrides) as r:
        yield r


async def get(r: Running, path: str, user_id: str = USER_ID) -> tuple[int, Any]:
    response = await r.client.get(path, headers=token(user_id))
    return response.status_code, await response.get_json()


async def seed_northwind(r: Running, members: int = 7) -> list[str]:
    """Northwind with `members` live members (the caller first), one removed member, and Contoso
    with one member of its own; returns the live member user ids."""
    ids = [USER_ID] + [f"user_2member{i:018d}" for i in range(1, members)]
    await r.db.users.insert_many([user(i) for i in [*ids, "user_2removed", "user_2outsider"]])
    await r.db.organizations.insert_many(
        [organization(ORG, "Northwind"), organization(OTHER_ORG, "Contoso")]
    )
    await r.db.organization_memberships.insert_many(
        [membership(ORG, i) for i in ids]
        + [
            membership(ORG, "user_2removed", deleted=True, deleted_at=CREATED),
            membership(OTHER_ORG, "user_2outsider"),
        ]
    )
    return ids


async def test_me_returns_the_user_without_private_metadata(running: Runner) -> None:
    """`/api/v1/me` is the stored document minus `_id` and `private_metadata`; dates in ISO-8601."""
    async with read_api(running) as r:
        await r.db.users.insert_one(user(USER_ID, last_sign_in_at=CREATED))
        status, body = await get(r, "/api/v1/me")
    assert status == 200
    assert body["clerk_id"] == USER_ID
    assert body["public_metadata"] == {"plan": "pro"}
    assert "private_metadata" not in body
    assert "_id" not in body
    assert body["created_at"] == "2026-03-01T12:00:00+00:00"
    assert datetime.fromisoformat(body["last_sign_in_at"]) == CREATED


async def test_me_is_404_user_not_synced_before_the_user_arrives(running: Runner) -> None:
    async with read_api(running) as r:
        status, body = await get(r, "/api/v1/me")
    assert (status, body["reason"]) == (404, "user_not_synced")
    assert "synced" in body["error"]


async def test_me_follows_webhooks_from_created_to_deleted(running: Runner) -> None:
    """With the users plugin, a signed user.created makes `/me` answer 200; user.deleted makes
    it 404 `user_deleted`."""
    created, deleted = sample("user.created"), sample("user.deleted")
    user_id = json.loads(created)["data"]["id"]
    async with read_api(running, plugins=[users_plugin]) as r:
        assert (await r.post(created))[0] == 200
        before = await get(r, "/api/v1/me", user_id)
        assert (await r.post(deleted))[0] == 200
        after = await get(r, "/api/v1/me", user_id)
    assert before[0] == 200
    assert before[1]["email"] == "maya.okafor@northwind.example"
    assert "private_metadata" not in before[1]
    assert (after[0], after[1]["reason"]) == (404, "user_deleted")


async def test_memberships_synced_from_webhooks_authorize_the_member_list(running: Runner) -> None:
    """Signed samples through the users and organizations plugins: the member sees Northwind
    and its members; the removed member and, after user.deleted, the deleted user get 403."""
    data = {n: json.loads(sample(n))["data"] for n in ("user.created", "organization.created")}
    maya, org_id = data["user.created"]["id"], data["organization.created"]["id"]
    removed = json.loads(sample("organizationMembership.deleted"))["data"]["public_user_data"]
    members_path = f"/api/v1/organizations/{org_id}/members"
    plugins = [users_plugin, organizations_plugin]
    async with read_api(running, plugins=plugins) as r:
        for name in (
            "user.created",
            "organization.created",
            "organizationMembership.created",
            "organizationMembership.deleted",
        ):
            assert (await r.post(sample(name)))[0] == 200, name
        mine = await get(r, "/api/v1/me/organizations", maya)
        listed = await get(r, members_path, maya)
        refused = await get(r, members_path, removed["user_id"])
        assert (await r.post(sample("user.deleted")))[0] == 200
        after_deletion = await get(r, members_path, maya)
    assert mine[0] == 200
    assert [m["organization"]["name"] for m in mine[1]["data"]] == ["Northwind Labs"]
    assert listed[0] == 200
    assert [m["user_id"] for m in listed[1]["data"]] == [maya]
    assert listed[1]["data"][0]["user"]["first_name"] == data["user.created"]["first_name"]
    assert (refused[0], refused[1]["reason"]) == (403, "not_a_member")
    assert (after_deletion[0], after_deletion[1]["reason"]) == (403, "not_a_member")


async def test_my_organizations_lists_live_memberships_with_summaries(running: Runner) -> None:
    """Deleted memberships and memberships of deleted organizations are left out; an
    organization not yet synced still shows with its id."""
    async with read_api(running) as r:
        await seed_northwind(r, members=1)
        gone, pending = "org_2gone", "org_2pending"
        await r.db.organizations.insert_one(organization(gone, "Gone", deleted=True))
        await r.db.organization_memberships.insert_many(
            [
                membership(OTHER_ORG, USER_ID, deleted=True),
                membership(gone, USER_ID),
                membership(pending, USER_ID, role="org:admin"),
            ]
        )
        status, body = await get(r, "/api/v1/me/organizations")
    assert status == 200
    by_org = {m["organization"]["id"]: m for m in body["data"]}
    assert set(by_org) == {ORG, pending}
    assert by_org[ORG]["organization"] == {
        "id": ORG,
        "name": "Northwind",
        "slug": "northwind",
        "image_url": "https://img.clerk.com/northwind.png",
    }
    assert by_org[ORG]["created_at"] == "2026-03-01T12:00:00+00:00"
    assert by_org[pending]["organization"]["name"] is None
    assert by_org[pending]["role"] == "org:admin"
    assert "private_metadata" not in json.dumps(body)


async def test_member_sees_the_member_list(running: Runner) -> None:
    async with read_api(running) as r:
        ids = await seed_northwind(r, members=3)
        status, body = await get(r, f"/api/v1/organizations/{ORG}/members")
    assert status == 200
    assert sorted(m["user_id"] for m in body["data"]) == sorted(ids)
    assert body["next_cursor"] is None
    first = next(m for m in body["data"] if m["user_id"] == USER_ID)
    assert first["user"] == {
        "id": USER_ID,
        "username": None,
        "first_name": USER_ID[-4:],
        "last_name": "Tester",
        "image_url": None,
    }
    assert "email" not in json.dumps(body)
    assert "private_metadata" not in json.dumps(body)


@pytest.mark.parametrize(
    ("caller", "why"),
    [("user_2removed", "removed member"), ("user_2outsider", "member of another org")],
)
async def test_non_members_get_403(running: Runner, caller: str, why: str) -> None:
    """A removed member (deleted membership) and another organization's member are refused."""
    async with read_api(running) as r:
        await seed_northwind(r, members=2)
        status, body = await get(r, f"/api/v1/organizations/{ORG}/members", caller)
    assert (why, status, body["reason"]) == (why, 403, "not_a_member")


async def test_members_of_a_deleted_organization_get_403(running: Runner) -> None:
    async with read_api(running) as r:
        await seed_northwind(r, members=2)
        await r.db.organizations.update_one({"clerk_id": ORG}, {"$set": {"deleted": True}})
        status, body = await get(r, f"/api/v1/organizations/{ORG}/members")
    assert (status, body["reason"]) == (403, "not_a_member")


@pytest.mark.parametrize("limit", [1, 3, 7, 100])
async def test_pagination_returns_every_member_exactly_once(running: Runner, limit: int) -> None:
    """Following `next_cursor` from page to page yields each live member once, then stops."""
    async with read_api(running) as r:
        ids = await seed_northwind(r, members=7)
        seen: list[str] = []
        pages = 0
        path = f"/api/v1/organizations/{ORG}/members?limit={limit}"
        cursor: str | None = None
        while True:
            status, body = await get(r, path + (f"&cursor={cursor}" if cursor else ""))
            assert status == 200
            assert len(body["data"]) <= limit
            seen += [m["user_id"] for m in body["data"]]
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == len(set(seen))
    assert pages == -(-len(ids) // limit)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("limit=0", "limit_invalid"),
        ("limit=101", "limit_invalid"),
        ("limit=abc", "limit_invalid"),
        ("limit=-1", "limit_invalid"),
        ("cursor=", "cursor_invalid"),
        ("cursor=!!!!", "cursor_invalid"),
        ("cursor=abcde", "cursor_invalid"),
    ],
)
async def test_bad_limit_or_cursor_is_400(running: Runner, query: str, reason: str) -> None:
    async with read_api(running) as r:
        await seed_northwind(r, members=1)
        status, body = await get(r, f"/api/v1/organizations/{ORG}/members?{query}")
    assert (status, body["reason"]) == (400, reason)


async def test_read_api_needs_a_token(running: Runner) -> None:
    """Every read endpoint answers 401 `token_missing` without a token."""
    paths = ["/api/v1/me", "/api/v1/me/organizations", f"/api/v1/organizations/{ORG}/members"]
    async with read_api(running, clerk_issuer=ISSUER) as r:
        answers = [await r.client.get(p) for p in paths]
        bodies = [await a.get_json() for a in answers]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert {b["reason"] for b in bodies} == {"token_missing"}


async def test_without_keys_the_read_api_is_not_mounted_and_the_log_says_why(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    """No CLERK_JWT_KEY and no CLERK_JWKS_URL: `/api/v1/*` answers 404 and start-up logs why."""
    async with running() as r:
        response = await r.client.get("/api/v1/me", headers=token())
        document = await (await r.client.get("/openapi.json")).get_json()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    disabled = [line for line in lines if line.get("event") == "read_api_disabled"]
    assert response.status_code == 404
    assert len(disabled) == 1
    assert "CLERK_JWT_KEY" in disabled[0]["reason"]
    assert "CLERK_JWKS_URL" in disabled[0]["reason"]
    assert not any(path.startswith("/api/") for path in document["paths"])


async def test_storage_down_is_503_not_500(running: Runner) -> None:
    """With MongoDB unreachable the read API answers 503 `storage_unavailable`."""
    async with read_api(running) as r:
        store = r.app.extensions["clerk_sync"].store
        store.close()
        status, body = await get(r, "/api/v1/me")
    assert (status, body["reason"]) == (503, "storage_unavailable")


KEY = b"k" * 32


def test_cursor_round_trips_and_limit_bounds() -> None:
    assert decode_cursor(KEY, ORG, encode_cursor(KEY, ORG, "orgmem_2abc")) == "orgmem_2abc"
    assert decode_cursor(KEY, ORG, None) is None
    assert parse_limit(None) == 20
    assert parse_limit("100") == 100
    with pytest.raises(ApiError):
        parse_limit("1000")


def _flip(cursor: str, at: int) -> str:
    """The cursor with one base64url character changed."""
    swapped = "B" if cursor[at] == "A" else "A"
    return cursor[:at] + swapped + cursor[at + 1 :]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "forged",
    [
        _b64(b'{"$gt":""}'),  # any base64url used to be taken
        _b64(b"orgmem_2abc"),  # the old, unauthenticated format
        _b64(b"\x00" * 16 + b"orgmem_2abc"),  # a MAC of zeros
        _b64(b"short"),  # shorter than a MAC
        _flip(encode_cursor(KEY, ORG, "orgmem_2abc"), 3),  # the MAC changed
        _flip(encode_cursor(KEY, ORG, "orgmem_2abc"), 24),  # the clerk_id changed
        encode_cursor(KEY, OTHER_ORG, "orgmem_2abc"),  # handed out for another organization
        encode_cursor(b"x" * 32, ORG, "orgmem_2abc"),  # made with another key
    ],
)
def test_a_cursor_this_api_did_not_hand_out_is_refused(forged: str) -> None:
    with pytest.raises(ApiError) as caught:
        decode_cursor(KEY, ORG, forged)
    assert (caught.value.status, caught.value.reason) == (400, "cursor_invalid")


async def test_a_tampered_cursor_is_400_over_http(running: Runner) -> None:
    async with read_api(running) as r:
        await seed_northwind(r, members=3)
        _, first = await get(r, f"/api/v1/organizations/{ORG}/members?limit=1")
        cursor = first["next_cursor"]
        path = f"/api/v1/organizations/{ORG}/members?limit=1&cursor="
        good, _ = await get(r, path + cursor)
        answers = [await get(r, path + c) for c in (_flip(cursor, 5), _b64(b'{"$gt":""}'))]
    assert good == 200
    assert [(status, body["reason"]) for status, body in answers] == [
        (400, "cursor_invalid"),
        (400, "cursor_invalid"),
    ]


def test_cursor_key_is_shared_by_replicas_and_random_without_a_secret(
    make_settings: Any,
) -> None:
    """Replicas with the same settings make the same key (a cursor from one works on another);
    CLERK_SYNC_CURSOR_SECRET overrides; with no secret at all each process has its own key."""
    replica_a, replica_b = make_settings(), make_settings()
    configured = make_settings(clerk_sync_cursor_secret="shared-cursor-secret")
    alone = make_settings(clerk_webhook_signing_secret="")
    assert cursor_key(replica_a) == cursor_key(replica_b)
    assert cursor_key(configured) == cursor_key(
        make_settings(clerk_sync_cursor_secret="shared-cursor-secret")
    )
    assert cursor_key(configured) != cursor_key(replica_a)
    assert cursor_key(alone) != cursor_key(alone)
    assert len({cursor_key(replica_a), cursor_key(configured), cursor_key(alone)}) == 3
