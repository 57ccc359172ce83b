"""Signature verification as a pure function: the ±5 minute window, headers, secrets, rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from clerk_sync.errors import BadRequest, InvalidSignature
from clerk_sync.testing import TEST_SECRET, sign
from clerk_sync.webhooks.verify import (
    TOLERANCE_SECONDS,
    SvixHeaders,
    decode_secret,
    parse_headers,
    verify,
)

BODY = b'{"type":"user.created","data":{"id":"user_1"}}'
NOW = 1_750_000_000
KEY = decode_secret(TEST_SECRET)
OTHER = b"another-key-another-key-another!"


def headers(*, at: int = NOW, msg_id: str = "msg_1", body: bytes = BODY) -> SvixHeaders:
    signature = sign(body, secret=TEST_SECRET, msg_id=msg_id, timestamp=at)
    return parse_headers(
        {"svix-id": msg_id, "svix-timestamp": str(at), "svix-signature": signature}
    )


def test_the_tolerance_is_five_minutes() -> None:
    assert TOLERANCE_SECONDS == 300


@pytest.mark.parametrize("offset", [-300, -299, -1, 0, 1, 299, 300])
def test_a_timestamp_within_five_minutes_either_way_is_accepted(offset: int) -> None:
    verify(BODY, headers(at=NOW + offset), [KEY], now=NOW)


@pytest.mark.parametrize("offset", [-301, 301, -3600, 86_400])
def test_a_timestamp_beyond_five_minutes_either_way_is_refused(offset: int) -> None:
    with pytest.raises(InvalidSignature) as refused:
        verify(BODY, headers(at=NOW + offset), [KEY], now=NOW)
    assert str(refused.value) == "timestamp outside the 5 minute tolerance"


def test_any_configured_key_verifies() -> None:
    verify(BODY, headers(), [OTHER, KEY], now=NOW)
    verify(BODY, headers(), [KEY, OTHER], now=NOW)


def test_no_matching_key_is_refused() -> None:
    with pytest.raises(InvalidSignature, match="no signature matches"):
        verify(BODY, headers(), [OTHER], now=NOW)
    with pytest.raises(InvalidSignature):
        verify(BODY, headers(), [], now=NOW)


@pytest.mark.parametrize(
    "tamper", ["body", "id", "timestamp"], ids=["body", "svix-id", "svix-timestamp"]
)
def test_the_signature_covers_id_timestamp_and_body(tamper: str) -> None:
    signed = headers()
    body = BODY + b" " if tamper == "body" else BODY
    forged = SvixHeaders(
        "msg_2" if tamper == "id" else signed.id,
        signed.timestamp + 1 if tamper == "timestamp" else signed.timestamp,
        signed.signatures,
    )
    with pytest.raises(InvalidSignature):
        verify(body, forged, [KEY], now=NOW)


def test_the_signed_content_is_id_dot_timestamp_dot_body() -> None:
    content = f"msg_9.{NOW}.".encode() + BODY
    digest = hmac.new(KEY, content, hashlib.sha256).digest()
    verify(BODY, SvixHeaders("msg_9", NOW, (digest,)), [KEY], now=NOW)


def test_any_v1_entry_may_match_and_other_versions_are_skipped() -> None:
    good = sign(BODY, secret=TEST_SECRET, msg_id="msg_1", timestamp=NOW)
    junk = "v1," + base64.b64encode(b"x" * 32).decode()
    parsed = parse_headers(
        {"svix-id": "msg_1", "svix-timestamp": str(NOW), "svix-signature": f"v2,abc {junk} {good}"}
    )
    assert len(parsed.signatures) == 2
    verify(BODY, parsed, [KEY], now=NOW)


def test_an_undecodable_v1_entry_does_not_hide_the_valid_ones_after_it() -> None:
    good = sign(BODY, secret=TEST_SECRET, msg_id="msg_1", timestamp=NOW)
    parsed = parse_headers(
        {"svix-id": "msg_1", "svix-timestamp": str(NOW), "svix-signature": f"v1,!!! {good}"}
    )
    assert len(parsed.signatures) == 1
    verify(BODY, parsed, [KEY], now=NOW)


def test_webhook_prefixed_headers_are_read_when_svix_ones_are_absent() -> None:
    signature = sign(BODY, secret=TEST_SECRET, msg_id="msg_1", timestamp=NOW)
    parsed = parse_headers(
        {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": signature}
    )
    assert (parsed.id, parsed.timestamp) == ("msg_1", NOW)


def test_svix_headers_win_over_webhook_ones() -> None:
    signature = sign(BODY, secret=TEST_SECRET, msg_id="msg_1", timestamp=NOW)
    parsed = parse_headers(
        {
            "svix-id": "msg_1",
            "webhook-id": "msg_2",
            "svix-timestamp": str(NOW),
            "svix-signature": signature,
        }
    )
    assert parsed.id == "msg_1"


def _raw(**changes: str) -> dict[str, str]:
    values = {"svix-id": "msg_1", "svix-timestamp": str(NOW), "svix-signature": "v1,YWJj"}
    values.update(changes)
    return {k: v for k, v in values.items() if v != "<absent>"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"svix-id": "<absent>"}, "missing svix-id, svix-timestamp or svix-signature header"),
        (
            {"svix-timestamp": "<absent>"},
            "missing svix-id, svix-timestamp or svix-signature header",
        ),
        (
            {"svix-signature": "<absent>"},
            "missing svix-id, svix-timestamp or svix-signature header",
        ),
        ({"svix-id": ""}, "missing svix-id, svix-timestamp or svix-signature header"),
        ({"svix-id": "m" * 257}, "malformed svix-id header"),
        ({"svix-id": "msg\x00"}, "malformed svix-id header"),
        ({"svix-id": "msg_é"}, "malformed svix-id header"),
        ({"svix-timestamp": "12a"}, "malformed svix-timestamp header"),
        ({"svix-timestamp": "-1"}, "malformed svix-timestamp header"),
        ({"svix-timestamp": "٣٤٥"}, "malformed svix-timestamp header"),
        ({"svix-timestamp": "1" * 13}, "malformed svix-timestamp header"),
        ({"svix-signature": "v1,YWJj " * 600}, "malformed svix-signature header"),
        ({"svix-signature": "v1,"}, "malformed svix-signature header: no v1 signature"),
        ({"svix-signature": "v1,!!!"}, "malformed svix-signature header: no v1 signature"),
        ({"svix-signature": "v2,YWJj"}, "malformed svix-signature header: no v1 signature"),
        ({"svix-signature": "YWJj"}, "malformed svix-signature header: no v1 signature"),
    ],
)
def test_missing_or_malformed_headers_are_a_bad_request(
    changes: dict[str, str], message: str
) -> None:
    # the message is the `error` of the 400 body, what Svix shows for the attempt: exact
    with pytest.raises(BadRequest) as refused:
        parse_headers(_raw(**changes))
    assert str(refused.value) == message


def test_header_limits_themselves_are_accepted() -> None:
    signature = "v1,YWJj"
    padded = signature + " " * (4096 - len(signature))
    parsed = parse_headers(
        _raw(**{"svix-id": "m" * 256, "svix-timestamp": "1" * 12, "svix-signature": padded})
    )
    assert (len(parsed.id), parsed.timestamp, parsed.signatures) == (
        256,
        111_111_111_111,
        (b"abc",),
    )


def test_a_secret_decodes_with_or_without_its_prefix() -> None:
    assert decode_secret("whsec_YWJj") == b"abc"
    assert decode_secret("YWJj") == b"abc"


@pytest.mark.parametrize("secret", ["whsec_%%%", "whsec_YWJ", "whsec_YW Jj"])
def test_a_secret_that_is_not_base64_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match=r"^signing secret is not valid base64 after 'whsec_'$"):
        decode_secret(secret)
