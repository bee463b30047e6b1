"""Opaque, tamper-proof page tokens and bounded page sizes.

A token is ``base64url(json) + "." + base64url(hmac)``; the HMAC also covers a
fingerprint of the request (filter, order, parent…) so a token can't be replayed
against a different query. Stores fetch ``page_size + 1`` rows to know whether a
next page exists (the MLflow way).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from services.common.errors import FieldViolation, InvalidArgument

_INVALID = "the page token is invalid or was made for a different request"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str | bytes, payload: str, request_fingerprint: str) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    msg = payload.encode("ascii") + b"\x00" + request_fingerprint.encode()
    return hmac.new(key, msg, hashlib.sha256).digest()


def encode_page_token(secret: str | bytes, state: dict[str, Any], request_fingerprint: str) -> str:
    """Sign ``state`` (JSON-serialisable) for the request described by the fingerprint."""
    payload = _b64(json.dumps(state, separators=(",", ":"), sort_keys=True, default=str).encode())
    return f"{payload}.{_b64(_mac(secret, payload, request_fingerprint))}"


def decode_page_token(secret: str | bytes, token: str, request_fingerprint: str) -> dict[str, Any]:
    """Verify and decode a token; InvalidArgument on ``page_token`` if tampered or mismatched."""
    try:
        payload, sig = token.split(".")
        if not hmac.compare_digest(_unb64(sig), _mac(secret, payload, request_fingerprint)):
            raise ValueError("bad signature")
        state = json.loads(_unb64(payload))
        if not isinstance(state, dict):
            raise TypeError("not an object")
        return state
    except (ValueError, TypeError, UnicodeError):
        raise InvalidArgument(
            f"page_token: {_INVALID}", [FieldViolation("page_token", _INVALID)]
        ) from None


def request_fingerprint(*parts: object) -> str:
    """A stable fingerprint of the request fields that must stay the same across pages."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


def page_size(
    value: int | None, default: int = 50, maximum: int = 1000, field: str = "page_size"
) -> int:
    """AIP-158: 0/None → default; negative → InvalidArgument; above maximum → InvalidArgument."""
    if not value:
        return default
    if value < 0:
        desc = "must not be negative"
    elif value > maximum:
        desc = f"must be at most {maximum}"
    else:
        return int(value)
    raise InvalidArgument(f"{field}: {desc}", [FieldViolation(field, desc)])
