"""The OpenAPI document: valid, complete, and true of the live server's answers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from pymongo import MongoClient
from schemathesis.specs.openapi.checks import positive_data_acceptance

import clerk_sync
from clerk_sync.openapi import openapi_document
from clerk_sync.testing import TEST_SECRET
from tests.conftest import Runner
from tests.processes import ServerProcess
from tests.test_auth import USER_ID, signer

ORG = "org_2northwind0000000000000000"
CREATED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EXAMPLES_PER_OPERATION = 40


@pytest.mark.parametrize("read_api", [True, False])
def test_document_is_valid_openapi_3_1(read_api: bool) -> None:
    document = openapi_document(read_api)
    validate(document, cls=OpenAPIV31SpecValidator)
    assert document["openapi"] == "3.1.0"


def test_webhook_answers_are_all_described() -> None:
    """Every status the webhook contract names is in the document, each with a JSON schema."""
    responses = openapi_document(False)["paths"]["/webhooks/clerk"]["post"]["responses"]
    assert set(responses) == {"200", "202", "400", "401", "408", "409", "413", "500", "503"}
    for answer in responses.values():
        assert "schema" in answer["content"]["application/json"]


@pytest.mark.parametrize("read_api", [True, False])
async def test_every_route_of_the_app_is_documented(running: Runner, read_api: bool) -> None:
    """The served document lists exactly the app's routes (read API only when mounted)."""
    keys = {"clerk_jwt_key": signer("ins_key_one").pem} if read_api else {}
    async with running(**keys) as r:
        response = await r.client.get("/openapi.json")
        served = await response.get_json()
        routes = {
            (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
            for rule in r.app.url_map.iter_rules()
            if rule.endpoint != "static"
            for method in rule.methods or ()
            if method not in ("HEAD", "OPTIONS")
        } | {("/webhooks/clerk", "post")}  # a plain ASGI endpoint in front of Quart
    documented = {(path, m) for path, item in served["paths"].items() for m in item}
    assert response.status_code == 200
    assert documented == routes
    assert any(path.startswith("/api/v1/") for path, _ in routes) is read_api
    assert ("securitySchemes" in served["components"]) is read_api


def _seed(url: str, database: str) -> None:
    """The caller with a profile and a membership in an organization with a few members."""
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    db = client[database]
    members = [USER_ID, "user_2member000000000000001", "user_2member000000000000002"]
    db.users.insert_many(
        [
            {
                "clerk_id": m,
                "email": "caller@northwind.example",
                "first_name": "Maya",
                "public_metadata": {"plan": "pro"},
                "private_metadata": {"secret": True},
                "created_at": CREATED,
                "deleted": False,
            }
            for m in members
        ]
    )
    db.organizations.insert_one(
        {"clerk_id": ORG, "name": "Northwind", "slug": "northwind", "deleted": False}
    )
    db.organization_memberships.insert_many(
        [
            {
                "clerk_id": f"orgmem_{i}",
                "organization_id": ORG,
                "user_id": m,
                "role": "org:member",
                "permissions": [],
                "created_at": CREATED,
                "deleted": False,
            }
            for i, m in enumerate(members)
        ]
    )
    client.close()


@pytest.fixture
def server(mongodb_url: str, mongodb_db: str) -> Iterator[ServerProcess]:
    """`clerk-sync serve` with the read API on (CLERK_JWT_KEY) over the test's database."""
    _seed(mongodb_url, mongodb_db)
    env = {
        "MONGODB_URL": mongodb_url,
        "MONGODB_DB": mongodb_db,
        "CLERK_JWT_KEY": signer("ins_key_one").pem,
        "CLERK_WEBHOOK_SIGNING_SECRET": TEST_SECRET,
    }
    with ServerProcess(env) as process:
        yield process


def test_live_answers_conform_to_the_document(server: ServerProcess) -> None:
    """schemathesis, with a valid session token, finds no 5xx and no answer outside the
    document on any GET operation; fixed cases make sure the 200 of each read endpoint is hit."""
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    reads = schema.include(method="GET")
    auth = {"Authorization": "Bearer " + signer("ins_key_one").token(exp=2**31)}

    members = reads["/api/v1/organizations/{org_id}/members"]["GET"]
    fixed = [
        reads["/api/v1/me"]["GET"].Case(),
        reads["/api/v1/me/organizations"]["GET"].Case(),
        members.Case(path_parameters={"org_id": ORG}, query={"limit": 2}),
    ]
    answers = [case.call_and_validate(headers=auth).status_code for case in fixed]
    assert answers == [200, 200, 200]

    @given(case=reads.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION * 8,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: schemathesis.Case[Any]) -> None:
        # a cursor carries an HMAC (docs/read-api.md): one the service did not hand out is a 400
        # `cursor_invalid` although it matches the schema's pattern, which no schema can express
        forged_cursor = (case.query or {}).get("cursor") is not None
        excluded = [positive_data_acceptance] if forged_cursor else []
        response = case.call_and_validate(headers=auth, excluded_checks=excluded)
        assert response.status_code < 500
        if forged_cursor and response.status_code == 400:
            assert response.json()["reason"] in ("cursor_invalid", "limit_invalid")

    conforms()
    errors = [e for e in server.events() if e.get("level") in ("error", "critical")]
    assert errors == []


@pytest.mark.parametrize(
    ("module", "model", "component"),
    [
        ("webhooks/answers.py", "class DeliveryAccepted(_Body):", "DeliveryAccepted"),
        ("auth/models.py", "class MemberPage(_Answer):", "MemberPage"),
        ("observability/probes.py", "class Ready(_Answer):", "Ready"),
    ],
)
def test_a_field_added_to_a_response_model_is_documented(
    tmp_path: Path, module: str, model: str, component: str
) -> None:
    """Adding one line to a response model, in a copy of the core, is all the document needs."""
    copy = tmp_path / "clerk_sync"
    shutil.copytree(Path(clerk_sync.__file__).parent, copy)
    source = copy / module
    text = source.read_text()
    assert model in text
    source.write_text(text.replace(model, f"{model}\n    added_field: int | None = None\n", 1))
    script = (
        "import json, clerk_sync.openapi as o; "
        f"print(json.dumps(o.openapi_document(True)['components']['schemas'][{component!r}]))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    schema = json.loads(done.stdout)
    assert schema["properties"]["added_field"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    original = openapi_document(True)["components"]["schemas"][component]
    assert "added_field" not in original["properties"]
