"""The `whsec_…` signing-secret format, read by settings (validation) and the signature check."""

from __future__ import annotations

import base64
import binascii


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret."""
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("signing secret is not valid base64 after 'whsec_'") from error
