"""Session-token verification, called directly and through `/api/v1/me`, with keys made here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import RSAAlgorithm

from clerk_sync.auth.keys import JwksKeys, StaticKey, fetch_json
from clerk_sync.auth.tokens import TokenVerifier, token_from
from clerk_sync.errors import AuthError, ConfigError
from tests.conftest import Runner

ISSUER = "https://clerk.northwind.example"
ORIGIN = "https://app.northwind.example"
USER_ID = "user_2testcaller00000000000000"


class Signer:
    """An RSA key pair with a `kid`, making Clerk-shaped session tokens."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    @property
    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def token(self, *, kid: str | None = None, **overrides: Any) -> str:
        """A token for USER_ID valid now; keyword arguments replace claims (None drops one)."""
        claims = {k: v for k, v in {**claims_now(), **overrides}.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": kid or self.kid})


@cache
def signer(kid: str) -> Signer:
    """One key per `kid` for the whole run: RSA generation is the slow part of these tests."""
    return Signer(kid)


def claims_now(user_id: str = USER_ID) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": user_id,
        "sid": "sess_2testsession000000000000",
        "azp": ORIGIN,
        "iat": now,
        "nbf": now - 10,
        "exp": now + 60,
        "v": 2,
    }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes = b"") -> str:
    """A token built by hand, HMAC-SHA256 signed with `secret` when one is given."""
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    if not secret:
        return head + "."
    return head + "." + _b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 in a thread; `keys` can be swapped to rotate."""

    def __init__(self, *signers: Signer) -> None:
        self.keys = [s.jwk for s in signers]
        self.requests = 0
        self.failing = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                status = 500 if owner.failing else 200
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> JwksServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    with JwksServer(signer("ins_key_one")) as server:
        yield server


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pem_verifier(**options: Any) -> TokenVerifier:
    keys = StaticKey.from_pem(signer("ins_key_one").pem)
    return TokenVerifier(keys, issuer=ISSUER, authorized_parties=(ORIGIN,), **options)


# --- HTTP: every failure is a 401 with its reason -------------------------------------------


def _bad_tokens() -> list[tuple[str, dict[str, str], str]]:
    good, other = signer("ins_key_one"), signer("ins_key_other")
    now = int(time.time())
    public_pem = good.pem.encode()
    return [
        ("no token", {}, "token_missing"),
        ("not a JWT", bearer("not-a-jwt"), "token_malformed"),
        ("garbage segments", bearer("eyJ.eyJ.sig"), "token_malformed"),
        ("basic auth", {"Authorization": "Basic dXNlcjpwYXNz"}, "token_malformed"),
        ("expired", bearer(good.token(exp=now - 30, iat=now - 90)), "token_expired"),
        ("not yet valid", bearer(good.token(nbf=now + 60)), "token_not_yet_valid"),
        ("issued in the future", bearer(good.token(iat=now + 60)), "token_not_yet_valid"),
        ("wrong key", bearer(other.token(kid=good.kid)), "signature_invalid"),
        (
            "alg none",
            bearer(unsigned_token({"alg": "none", "typ": "JWT", "kid": good.kid}, claims_now())),
            "algorithm_not_allowed",
        ),
        (
            "HS256 with the public key as secret",
            bearer(
                unsigned_token(
                    {"alg": "HS256", "typ": "JWT", "kid": good.kid}, claims_now(), public_pem
                )
            ),
            "algorithm_not_allowed",
        ),
        ("wrong issuer", bearer(good.token(iss="https://clerk.evil.example")), "issuer_invalid"),
        ("azp not allowed", bearer(good.token(azp="https://evil.example")), "azp_not_allowed"),
        ("pending session", bearer(good.token(sts="pending")), "session_pending"),
        ("no exp", bearer(good.token(exp=None)), "claims_invalid"),
        ("no sub", bearer(good.token(sub=None)), "claims_invalid"),
        ("bad cookie", {"Cookie": "__session=junk"}, "token_malformed"),
    ]


async def test_every_bad_token_is_a_401_with_its_reason(running: Runner) -> None:
    """Each refused token answers 401 `{"error", "reason"}` with the expected code; never a 500."""
    pem = signer("ins_key_one").pem
    bad_tokens = _bad_tokens()  # made now: tokens minted at import would expire mid-run
    answers = {}
    async with running(
        clerk_jwt_key=pem, clerk_issuer=ISSUER, clerk_authorized_parties=ORIGIN
    ) as r:
        for name, headers, _ in bad_tokens:
            response = await r.client.get("/api/v1/me", headers=headers)
            answers[name] = (response.status_code, await response.get_json(), response.headers)
    for name, _, reason in bad_tokens:
        status, body, answer_headers = answers[name]
        assert (name, status, body["reason"]) == (name, 401, reason)
        assert isinstance(body["error"], str)
        assert answer_headers["WWW-Authenticate"].startswith("Bearer")


async def test_valid_token_is_accepted_from_header_and_cookie(running: Runner) -> None:
    """A valid token signs the caller in from the Authorization header or the __session cookie."""
    good = signer("ins_key_one")
    async with running(
        clerk_jwt_key=good.pem, clerk_issuer=ISSUER, clerk_authorized_parties=ORIGIN
    ) as r:
        await r.db.users.insert_one({"clerk_id": USER_ID, "first_name": "Maya", "deleted": False})
        by_header = await r.client.get("/api/v1/me", headers=bearer(good.token()))
        by_cookie = await r.client.get(
            "/api/v1/me", headers={"Cookie": f"__session={good.token()}"}
        )
        header_body, cookie_body = await by_header.get_json(), await by_cookie.get_json()
    assert (by_header.status_code, by_cookie.status_code) == (200, 200)
    assert header_body["clerk_id"] == cookie_body["clerk_id"] == USER_ID


async def test_leeway_of_five_seconds_and_missing_azp_are_accepted(running: Runner) -> None:
    """Expired or not-yet-valid by less than 5 s still passes; a token without `azp` passes."""
    good = signer("ins_key_one")
    now = int(time.time())
    tokens = [good.token(exp=now - 2), good.token(nbf=now + 2), good.token(azp=None)]
    async with running(
        clerk_jwt_key=good.pem, clerk_issuer=ISSUER, clerk_authorized_parties=ORIGIN
    ) as r:
        answers = [await r.client.get("/api/v1/me", headers=bearer(t)) for t in tokens]
        bodies = [await a.get_json() for a in answers]
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert {b["reason"] for b in bodies} == {"user_not_synced"}


async def test_unknown_kid_then_rotation_on_the_jwks_server(
    running: Runner, jwks: JwksServer
) -> None:
    """A `kid` the JWKS lacks is refused; once the server rotates it in, the next refetch
    (no sooner than the rate limit allows) accepts it, and the retired key stops working."""
    one, two = signer("ins_key_one"), signer("ins_key_two")
    async with running(clerk_jwks_url=jwks.url) as r:
        keys = r.app.extensions["clerk_sync.read_api"].keys
        clock = FakeClock()
        keys.clock = clock

        async def reason(token: str) -> tuple[int, str]:
            response = await r.client.get("/api/v1/me", headers=bearer(token))
            return response.status_code, (await response.get_json())["reason"]

        assert await reason(one.token()) == (404, "user_not_synced")
        assert await reason(two.token()) == (401, "key_not_found")
        jwks.keys = [two.jwk]
        assert await reason(two.token()) == (401, "key_not_found")  # rate limited: no refetch
        clock.now += 10
        assert await reason(two.token()) == (404, "user_not_synced")
        assert await reason(one.token()) == (401, "key_not_found")
    assert jwks.requests == 2


async def test_unreachable_jwks_is_a_401_jwks_unavailable(running: Runner) -> None:
    """When the JWKS cannot be fetched the caller gets 401 `jwks_unavailable`, not a 500."""
    with JwksServer() as server:
        url = server.url
    async with running(clerk_jwks_url=url) as r:
        response = await r.client.get("/api/v1/me", headers=bearer(signer("ins_key_one").token()))
        body = await response.get_json()
    assert (response.status_code, body["reason"]) == (401, "jwks_unavailable")


# --- the verifier called directly ---------------------------------------------------------


async def test_verifier_returns_the_session_of_a_valid_token() -> None:
    session = await pem_verifier().verify(signer("ins_key_one").token())
    assert session.user_id == USER_ID
    assert session.session_id == "sess_2testsession000000000000"
    assert session.claims["v"] == 2


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(4.0, None), (5.0, "token_expired"), (60.0, "token_expired")],
)
async def test_expiry_uses_the_injected_clock_and_leeway(offset: float, reason: str | None) -> None:
    """`exp` is checked against the verifier's clock with 5 s of leeway."""
    token = signer("ins_key_one").token()
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    verifier = pem_verifier(clock=FakeClock(expires + offset))
    if reason is None:
        await verifier.verify(token)
        return
    with pytest.raises(AuthError) as caught:
        await verifier.verify(token)
    assert caught.value.reason == reason


async def test_issuer_and_parties_are_not_checked_when_unset() -> None:
    """Without CLERK_ISSUER and CLERK_AUTHORIZED_PARTIES any `iss` and `azp` pass."""
    keys = StaticKey.from_pem(signer("ins_key_one").pem)
    token = signer("ins_key_one").token(iss="https://elsewhere.example", azp="https://x.example")
    session = await TokenVerifier(keys).verify(token)
    assert session.user_id == USER_ID


async def test_jwks_refetch_is_rate_limited_with_the_injected_clock(jwks: JwksServer) -> None:
    """A burst of unknown `kid`s costs one fetch per interval; the real fetch reads the server."""
    clock = FakeClock()
    keys = JwksKeys(jwks.url, fetch=fetch_json, clock=clock, min_interval=10.0)
    assert await keys.key_for("ins_key_one") is not None
    for _ in range(5):
        with pytest.raises(AuthError, match="no key") as caught:
            await keys.key_for("ins_forged")
        assert caught.value.reason == "key_not_found"
    clock.now += 9.9
    with pytest.raises(AuthError):
        await keys.key_for("ins_forged")
    assert jwks.requests == 1
    clock.now += 0.1
    with pytest.raises(AuthError):
        await keys.key_for("ins_forged")
    assert jwks.requests == 2


async def test_failing_jwks_keeps_nothing_and_reports_unavailable(jwks: JwksServer) -> None:
    """A 500 from the JWKS endpoint is `jwks_unavailable`; recovery after the interval works."""
    clock = FakeClock()
    jwks.failing = True
    keys = JwksKeys(jwks.url, clock=clock)
    with pytest.raises(AuthError) as caught:
        await keys.key_for("ins_key_one")
    assert caught.value.reason == "jwks_unavailable"
    jwks.failing = False
    clock.now += 10
    assert await keys.key_for("ins_key_one") is not None


async def test_jwks_entries_that_are_not_rs256_signing_keys_are_skipped() -> None:
    """Only RSA keys for signatures with RS256 (or no `alg`) are kept."""
    good = signer("ins_key_one").jwk
    document = {
        "keys": [
            good,
            {**good, "kid": "enc", "use": "enc"},
            {**good, "kid": "rs512", "alg": "RS512"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            "not a key",
        ]
    }

    async def fetch(url: str) -> object:
        return document

    keys = JwksKeys("https://clerk.example/jwks", fetch=fetch)
    await keys.key_for("ins_key_one")
    assert set(keys.keys) == {"ins_key_one"}


@pytest.mark.parametrize(
    ("authorization", "cookie", "expected"),
    [
        ("Bearer abc", None, "abc"),
        ("bearer  abc ", "cookie", "abc"),
        (None, "from-cookie", "from-cookie"),
        ("", "from-cookie", "from-cookie"),
    ],
)
def test_token_comes_from_bearer_header_before_cookie(
    authorization: str | None, cookie: str | None, expected: str
) -> None:
    assert token_from(authorization, cookie) == expected


def test_pem_with_escaped_newlines_loads_and_junk_is_a_config_error() -> None:
    """CLERK_JWT_KEY with literal `\\n` loads; a value that is no PEM key stops start-up."""
    pem = signer("ins_key_one").pem
    assert StaticKey.from_pem(pem.replace("\n", "\\n")).key.key_size == 2048
    with pytest.raises(ConfigError, match="CLERK_JWT_KEY"):
        StaticKey.from_pem("not a key")


# --- the JWKS cache lifetime and malformed claims ------------------------------------------


async def test_a_key_removed_from_the_jwks_is_refused_after_the_cache_lifetime(
    jwks: JwksServer,
) -> None:
    """Without any unknown `kid` to force a refetch, the cache lifetime alone retires a key."""
    one, two = signer("ins_key_one"), signer("ins_key_two")
    clock = FakeClock()
    keys = JwksKeys(jwks.url, clock=clock, max_age=3600)
    verifier = TokenVerifier(keys)
    assert (await verifier.verify(one.token())).user_id == USER_ID
    jwks.keys = [two.jwk]  # `one` is retired (compromised, say) and `two` rotated in
    clock.now += 3599
    assert (await verifier.verify(one.token())).user_id == USER_ID  # still within the lifetime
    assert jwks.requests == 1
    clock.now += 1
    with pytest.raises(AuthError) as caught:
        await verifier.verify(one.token())
    assert caught.value.reason == "key_not_found"
    assert jwks.requests == 2
    assert (await verifier.verify(two.token())).user_id == USER_ID


async def test_an_expired_cache_that_cannot_be_refreshed_trusts_no_old_key(
    jwks: JwksServer,
) -> None:
    one = signer("ins_key_one")
    clock = FakeClock()
    keys = JwksKeys(jwks.url, clock=clock, max_age=60)
    await keys.key_for(one.kid)
    jwks.failing = True
    clock.now += 60
    with pytest.raises(AuthError) as caught:
        await keys.key_for(one.kid)
    assert caught.value.reason == "jwks_unavailable"
    jwks.failing = False
    clock.now += 10  # the refetch rate limit has passed
    assert await keys.key_for(one.kid) is not None
    assert jwks.requests == 3


async def test_the_jwks_cache_lifetime_comes_from_the_setting(
    running: Runner, jwks: JwksServer
) -> None:
    async with running(clerk_jwks_url=jwks.url, clerk_jwks_cache_seconds=120) as r:
        keys = r.app.extensions["clerk_sync.read_api"].keys
    assert keys.max_age == 120


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("azp as a list", {"azp": [ORIGIN]}),
        ("azp as an object", {"azp": {"origin": ORIGIN}}),
        ("exp beyond any float", {"exp": 10**400}),
        ("nbf beyond any float", {"nbf": -(10**400)}),
        ("sub with a lone surrogate", {"sub": "user_\ud800"}),
        ("sub as a number", {"sub": 42}),
        ("sid as a list", {"sid": ["sess_1"]}),
        ("sid with a lone surrogate", {"sid": "sess_\udfff"}),
    ],
)
async def test_a_malformed_claim_is_a_401_claims_invalid(
    running: Runner, name: str, overrides: dict[str, Any]
) -> None:
    """Tokens signed with the instance key whose claims have the wrong type or shape."""
    good = signer("ins_key_one")
    async with running(
        clerk_jwt_key=good.pem, clerk_issuer=ISSUER, clerk_authorized_parties=ORIGIN
    ) as r:
        response = await r.client.get("/api/v1/me", headers=bearer(good.token(**overrides)))
        body = await response.get_json()
    assert (name, response.status_code, body["reason"]) == (name, 401, "claims_invalid")
    assert isinstance(body["error"], str)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
CLAIMS = ("exp", "nbf", "iat", "iss", "sub", "sid", "azp", "sts")
REASONS = {"claims_invalid", "token_expired", "token_not_yet_valid", "issuer_invalid"}
REASONS |= {"azp_not_allowed", "session_pending"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(CLAIMS), value=JSON_VALUES)
def test_any_claim_value_gives_a_session_or_an_auth_error(name: str, value: Any) -> None:
    """Whatever type a claim holds, the verifier answers with a usable session or an AuthError
    (a 401 with its reason), never another exception (a 500)."""
    verifier = pem_verifier(clock=FakeClock(time.time()))
    claims = {**claims_now(), name: value}
    try:
        session = verifier.check(claims)
    except AuthError as error:
        reason = error.reason
        assert reason in REASONS
        return
    session.user_id.encode("utf-8")
    assert session.user_id
    assert session.session_id is None or isinstance(session.session_id, str)
