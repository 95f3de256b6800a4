"""Delivery signatures: ``X-Roster-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` over
``"<t>.<raw body>"``, keyed with the secret's UTF-8 bytes; one ``v1=`` per live secret, so a
receiver that knows either side of a rotation accepts the delivery (docs/hooks.md)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "X-Roster-Signature"
DELIVERY_HEADER = "X-Roster-Delivery"


def signature_v1(*, secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(*, secrets: Sequence[str], body: bytes, timestamp: int | None = None) -> str:
    """The header value for ``body``, signed by every live secret (the current one first)."""
    t = int(time.time()) if timestamp is None else timestamp
    return ",".join([f"t={t}", *(f"v1={signature_v1(secret=s, timestamp=t, body=body)}" for s in secrets)])


def signature_verify(*, secret: str, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """Whether ``header`` carries a ``v1`` of ``body`` by ``secret``, made within ``tolerance``
    seconds of now (an old signed delivery replayed later is refused)."""
    fields = [part.partition("=") for part in header.split(",")]
    stamps = [value for key, _, value in fields if key.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit() or abs(time.time() - int(stamps[0])) > tolerance:
        return False
    expected = signature_v1(secret=secret, timestamp=int(stamps[0]), body=body)
    return any(key.strip() == "v1" and hmac.compare_digest(value, expected) for key, _, value in fields)
