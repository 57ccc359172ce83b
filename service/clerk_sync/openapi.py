"""The OpenAPI 3.1 document of every endpoint, served at `/openapi.json`.

Built from the pydantic models that shape the answers (`webhooks.answers`, `observability.probes`,
`auth.models`): a field added to one of them is in the document with no other change. The table
below says only which model answers which path and status; tests check the live answers against
the document (openapi-spec-validator for the document, schemathesis for the answers).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from importlib.metadata import version
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from clerk_sync.auth import models as api
from clerk_sync.observability import probes
from clerk_sync.webhooks import answers
from clerk_sync.webhooks.endpoint import WEBHOOK_PATH

type Schema = dict[str, Any]
type Responses = dict[int, tuple[str, type[BaseModel]]]

REF = "#/components/schemas/{model}"
_OBJECT: Schema = TypeAdapter(dict[str, Any]).json_schema()
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}}
_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"sessionCookie": []}]
_HEADER = "Svix `{}` (or its `webhook-*` twin); required in practice."
SECURITY_SCHEMES: Schema = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "__session"},
}


class _NoFieldTitles(GenerateJsonSchema):
    """Model names only; a title per field says nothing its name does not."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def component_schemas(models: Iterable[type[BaseModel]]) -> dict[str, Schema]:
    """Each model's JSON schema (and those it refers to) under its class name."""
    found: dict[str, Schema] = {}
    for model in models:
        schema = model.model_json_schema(
            ref_template=REF, schema_generator=_NoFieldTitles, mode="serialization"
        )
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def _ref(model: type[BaseModel]) -> Schema:
    return {"$ref": REF.format(model=model.__name__)}


def _json(description: str, schema: Schema, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _responses(responses: Responses, headers: dict[int, Schema] | None = None) -> Schema:
    extra = headers or {}
    return {
        str(status): _json(
            text, _ref(model), **({"headers": extra[status]} if status in extra else {})
        )
        for status, (text, model) in sorted(responses.items())
    }


def _operation(
    operation_id: str, summary: str, tag: str, responses: Schema, **extra: Any
) -> Schema:
    return {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "responses": responses,
        **extra,
    }


class DeliveryHeaders(BaseModel):
    """The Svix delivery headers (each also accepted as its `webhook-*` twin)."""

    svix_id: str | None = Field(None, alias="svix-id", description=_HEADER.format("svix-id"))
    svix_timestamp: str | None = Field(
        None, alias="svix-timestamp", description=_HEADER.format("svix-timestamp")
    )
    svix_signature: str | None = Field(
        None, alias="svix-signature", description=_HEADER.format("svix-signature")
    )


class OrganizationPath(BaseModel):
    org_id: str = Field(
        pattern=r"^[A-Za-z0-9_]{1,64}$", description="Clerk organization id (`org_…`)."
    )


def parameters(model: type[BaseModel], where: str) -> list[Schema]:
    """OpenAPI parameters from a model's fields (by alias); an optional field is not required."""
    schema = model.model_json_schema(by_alias=True, schema_generator=_NoFieldTitles)
    required = set(schema.get("required", ()))
    found = []
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        branches = [b for b in prop.pop("anyOf", ()) if b.get("type") != "null"]
        if branches:
            prop = {**branches[0], **prop}
        if prop.get("default", 0) is None:
            del prop["default"]
        parameter: Schema = {"name": name, "in": where, "required": name in required}
        if description:
            parameter["description"] = description
        found.append({**parameter, "schema": prop})
    return found


def _webhook() -> Schema:
    body = {
        "required": True,
        "description": "The raw Clerk event envelope, verified byte for byte.",
        "content": {"application/json": {"schema": _OBJECT}},
    }
    operation = _operation(
        "receiveClerkWebhook",
        "Receive one Clerk webhook delivery (Svix-signed).",
        "webhooks",
        _responses(answers.RESPONSES, {503: _RETRY_AFTER}),
        parameters=parameters(DeliveryHeaders, "header"),
        requestBody=body,
    )
    return {"post": operation}


def _operations() -> dict[str, Schema]:
    text = {
        "description": "Prometheus exposition format.",
        "content": {"text/plain": {"schema": TypeAdapter(str).json_schema()}},
    }
    table: list[tuple[str, str, str, Schema]] = [
        (
            "/livez",
            "livez",
            "Liveness: 200 while the process serves.",
            _responses({200: ("Serving.", probes.Live)}),
        ),
        (
            "/readyz",
            "readyz",
            "Readiness: MongoDB answers a ping and plugins are loaded.",
            _responses(
                {200: ("Ready.", probes.Ready), 503: ("Not ready, with reasons.", probes.NotReady)}
            ),
        ),
        ("/metrics", "metrics", "Prometheus metrics in text format.", {"200": text}),
        (
            "/plugins",
            "plugins",
            "Every discovered plugin and its status.",
            _responses({200: ("Plugins.", probes.Plugins)}),
        ),
        (
            "/openapi.json",
            "openapi",
            "This document.",
            {"200": _json("OpenAPI document.", _OBJECT)},
        ),
    ]
    return {
        path: {"get": _operation(op, summary, "operations", responses)}
        for path, op, summary, responses in table
    }


def _read_get(operation_id: str, summary: str, responses: Responses, **extra: Any) -> Schema:
    """One read API operation: its own answers plus the 401 and 503 every route may give."""
    always: Responses = {
        401: ("No valid session token; `reason` says why.", api.AuthError),
        503: ("MongoDB unavailable.", api.StorageUnavailable),
    }
    headers: dict[int, Schema] = {
        401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
        503: _RETRY_AFTER,
    }
    operation = _operation(
        operation_id,
        summary,
        "read API",
        _responses({**responses, **always}, headers),
        security=_SECURITY,
        **extra,
    )
    return {"get": operation}


def _read_api() -> dict[str, Schema]:
    get = _read_get
    members_parameters = parameters(OrganizationPath, "path") + parameters(
        api.MembersQuery, "query"
    )
    return {
        "/api/v1/me": get(
            "getMe",
            "The caller's user document.",
            {
                200: ("The caller.", api.User),
                404: ("Not synced yet, or deleted.", api.UserNotFound),
            },
        ),
        "/api/v1/me/organizations": get(
            "getMyOrganizations",
            "The caller's live memberships with organization summaries.",
            {200: ("Memberships.", api.MyOrganizations)},
        ),
        "/api/v1/me/billing": get(
            "getMyBilling",
            "The plans, features and subscription items of the caller, or of an organization "
            "the caller belongs to, from synced Clerk Billing state.",
            {
                200: ("What the subject is entitled to now.", api.Billing),
                403: (
                    "`organization_id` names an organization the caller is not a live member of.",
                    api.Forbidden,
                ),
            },
            parameters=parameters(api.BillingQuery, "query"),
        ),
        "/api/v1/organizations/{org_id}/members": get(
            "listOrganizationMembers",
            "Live members of an organization the caller belongs to, in pages.",
            {
                200: ("One page of members.", api.MemberPage),
                400: ("Bad `limit` or `cursor`.", api.BadRequest),
                403: ("The caller is not a live member.", api.Forbidden),
            },
            parameters=members_parameters,
        ),
    }


def openapi_document(
    read_api: bool, *, webhook_path: str = WEBHOOK_PATH, only: Collection[str] | None = None
) -> dict[str, Any]:
    """The document; the read API's paths and security schemes only when it is mounted.

    The webhook is listed at `webhook_path`; given `only`, the probes, `/metrics`, `/plugins`
    and `/openapi.json` are listed only when in it (a host app of `ClerkSync` may leave some
    of them out)."""
    paths = {webhook_path: _webhook(), **_operations()}
    if only is not None:
        paths = {p: v for p, v in paths.items() if p == webhook_path or p in only}
    models: list[type[BaseModel]] = [m for _, m in answers.RESPONSES.values()]
    models += [probes.Live, probes.Ready, probes.NotReady, probes.Plugins]
    components: dict[str, Any] = {}
    if read_api:
        paths.update(_read_api())
        models += [api.User, api.MyOrganizations, api.Billing, api.MemberPage, *api.ERRORS.values()]
        components["securitySchemes"] = SECURITY_SCHEMES
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "clerk-sync",
            "version": version("clerk-sync"),
            "description": "Clerk webhooks in, MongoDB projections out, and a small read API "
            "protected by Clerk session tokens.",
        },
        "paths": paths,
        "components": {"schemas": component_schemas(models), **components},
    }
