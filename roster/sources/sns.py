"""SNS HTTPS delivery: parse and verify the messages SNS posts to ``/sns/`` (roster.sources.sns_views).

No Django here: the view passes the settings in. Every message, of every type, must pass all of:

1. its ``TopicArn`` is one the operator allowed (``SNS_ALLOWED_TOPIC_ARNS``; empty allows none);
2. its ``SignatureVersion`` is ``"1"`` (RSA PKCS#1 v1.5 with SHA1) or ``"2"`` (with SHA256);
3. its ``SigningCertURL`` is ``https://sns.<region>.amazonaws.com[.cn]/<...>.pem`` (no user
   info, no other port, no query) and, for a ``SubscriptionConfirmation``, its ``SubscribeURL``
   is https on such a host too;
4. its ``Timestamp`` is at most :data:`MAX_AGE` old (a replay guard: SNS stops retrying an
   HTTP/S delivery after 3,600 s, a hard limit) and at most :data:`MAX_SKEW` in the future;
5. its ``Signature`` verifies, with the certificate at ``SigningCertURL``, over the string to
   sign of the AWS documentation: ``"Key\\nValue\\n"`` for each signed key, in alphabetical
   order (``Subject`` only when present).

The checks run in that order, so a message that names a topic nobody allowed, or a host that is
not SNS, never makes this process fetch anything. :func:`certificate_fetch` (the network) and
:func:`subscription_confirm` are separate functions the tests replace; the URL checks are always
applied before either is called. Certificates are cached in-process by URL (SNS publishes a new
URL when it rotates its certificate).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

# The keys signed for each message type, in the order they are signed (AWS: "Verifying the
# signatures of Amazon SNS messages"). Subject is signed only when the message carries one.
_CONFIRMATION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SIGNED_KEYS: dict[str, tuple[str, ...]] = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: _CONFIRMATION_KEYS,
    UNSUBSCRIBE_CONFIRMATION: _CONFIRMATION_KEYS,
}
OPTIONAL_KEYS = frozenset({"Subject"})
SIGNATURE_KEYS = ("SignatureVersion", "Signature", "SigningCertURL")

SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

# An AWS region is <area>-[gov-]<direction>-<n>, with one of AWS's geographic areas; the China
# partition (cn-) has its own domain. Anything looser lets in hosts that are not SNS: S3 serves
# a bucket named "sns" at sns.s3.amazonaws.com, and anyone can create one. Used with fullmatch.
SNS_HOST = re.compile(
    r"sns\.(?:(?:af|ap|ca|eu|il|me|mx|sa|us)(?:-gov)?-[a-z]+-\d{1,2}\.amazonaws\.com"
    r"|cn-[a-z]+-\d{1,2}\.amazonaws\.com\.cn)"
)

MAX_AGE = timedelta(hours=1)
MAX_SKEW = timedelta(minutes=5)
FETCH_TIMEOUT_SECONDS = 5.0
MAX_CERTIFICATE_BYTES = 64 * 1024
CERTIFICATE_CACHE_SECONDS = 24 * 3600
CERTIFICATE_CACHE_SIZE = 64


class SnsInvalid(Exception):
    """The body is not an SNS message we can read (answered 400)."""


class SnsRejected(Exception):
    """The message failed verification or names a topic nobody allowed (answered 403)."""


class SnsUnavailable(Exception):
    """Verification could not complete for a passing reason, e.g. the certificate host did not
    answer (answered 503, so SNS retries the delivery)."""


# --- parsing -------------------------------------------------------------------------------------


def message_parse(body: bytes | str) -> dict[str, Any]:
    """The SNS JSON document, with every key verification needs present as a string."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        doc = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SnsInvalid(f"body is not UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SnsInvalid("body is JSON but not an object")
    kind = doc.get("Type")
    if kind not in SIGNED_KEYS:
        raise SnsInvalid(f"Type {kind!r} is not one of {', '.join(SIGNED_KEYS)}")
    for key in (*SIGNED_KEYS[kind], *SIGNATURE_KEYS):
        value = doc.get(key)
        if key in OPTIONAL_KEYS and value is None:
            continue
        if not isinstance(value, str):
            what = "missing" if value is None else f"a {type(value).__name__}, not a string"
            raise SnsInvalid(f"{kind} field {key!r} is {what}")
    if timestamp_parse(doc["Timestamp"]) is None:
        raise SnsInvalid(f"Timestamp {doc['Timestamp']!r} is not an ISO 8601 time with a zone")
    return doc


def timestamp_parse(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def string_to_sign(doc: dict[str, Any]) -> bytes:
    """What SNS signed: ``"Key\\nValue\\n"`` for each signed key of the message's type."""
    parts = []
    for key in SIGNED_KEYS[doc["Type"]]:
        value = doc.get(key)
        if value is None and key in OPTIONAL_KEYS:
            continue
        parts.append(f"{key}\n{value}\n")
    # surrogatepass: a lone surrogate from a JSON escape cannot have been signed; it must fail
    # verification, not raise.
    return "".join(parts).encode("utf-8", "surrogatepass")


# --- URLs ----------------------------------------------------------------------------------------


def _sns_https_url(url: str) -> bool:
    """https, an SNS endpoint host, the default port, no user info, nothing hidden."""
    if not isinstance(url, str) or any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or parts.username is not None or parts.password is not None:
        return False
    if port not in (None, 443) or parts.hostname is None:
        return False
    # The netloc must be exactly the host (lower case, as AWS writes it): no tricks urlsplit
    # would normalise away.
    if parts.netloc not in (parts.hostname, f"{parts.hostname}:443"):
        return False
    return SNS_HOST.fullmatch(parts.hostname) is not None


def signing_cert_url_allowed(url: str) -> bool:
    """True for ``https://sns.<region>.amazonaws.com[.cn]/<path>.pem`` and nothing else."""
    if not _sns_https_url(url):
        return False
    parts = urlsplit(url)
    return parts.path.endswith(".pem") and not parts.query and not parts.fragment


def subscribe_url_allowed(url: str) -> bool:
    """True for an https URL on an SNS endpoint host (the query carries the token)."""
    return _sns_https_url(url) and not urlsplit(url).fragment


# --- network (replaced in tests) -----------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could lead anywhere: it is an error (urllib raises HTTPError for the 3xx)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _get(url: str, *, limit: int) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "chime-roster-sns"})
    with _opener.open(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
        data = response.read(limit + 1)
    if len(data) > limit:
        raise urllib.error.HTTPError(url, 413, f"response is larger than {limit} bytes", None, None)
    return data


def certificate_fetch(url: str) -> bytes:
    """The PEM at ``url`` (already checked by :func:`signing_cert_url_allowed`).

    TLS is verified against the system trust store, redirects are refused, the wait is short.
    Raises ``urllib.error.HTTPError`` for an answer other than 200, another ``OSError`` when the
    host could not be reached.
    """
    return _get(url, limit=MAX_CERTIFICATE_BYTES)


def subscription_confirm(url: str) -> None:
    """Visit a ``SubscribeURL`` (already checked by :func:`subscribe_url_allowed`): SNS then
    confirms the subscription. Raises ``OSError`` when that failed."""
    _get(url, limit=MAX_CERTIFICATE_BYTES)


# --- certificates --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SigningKey:
    key: rsa.RSAPublicKey
    not_before: datetime
    not_after: datetime
    cached_until: float  # time.monotonic()


_cache: dict[str, _SigningKey] = {}
_cache_lock = threading.Lock()


def certificate_cache_clear() -> None:
    with _cache_lock:
        _cache.clear()


def _signing_key(url: str, *, now: datetime) -> rsa.RSAPublicKey:
    with _cache_lock:
        entry = _cache.get(url)
    if entry is None or entry.cached_until <= time.monotonic():
        entry = _signing_key_load(url)
        with _cache_lock:
            if len(_cache) >= CERTIFICATE_CACHE_SIZE:
                _cache.clear()  # only real SNS certificates get here: a handful per deployment
            _cache[url] = entry
    if not entry.not_before <= now <= entry.not_after:
        raise SnsRejected(f"certificate {url} is not valid at {now.isoformat()}")
    return entry.key


def _signing_key_load(url: str) -> _SigningKey:
    try:
        pem = certificate_fetch(url)  # looked up at call time, so tests can serve their own
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise SnsUnavailable(f"certificate {url}: HTTP {exc.code}") from None
        raise SnsRejected(f"certificate {url}: HTTP {exc.code}") from None
    except OSError as exc:
        raise SnsUnavailable(f"certificate {url} could not be fetched: {exc}") from None
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise SnsRejected(f"certificate {url} is not a PEM X.509 certificate: {exc}") from None
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SnsRejected(f"certificate {url} does not hold an RSA key")
    return _SigningKey(
        key=key,
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        cached_until=time.monotonic() + CERTIFICATE_CACHE_SECONDS,
    )


# --- verification --------------------------------------------------------------------------------


def message_verify(
    doc: dict[str, Any], *, allowed_topics: Collection[str], now: datetime | None = None
) -> None:
    """Raise :class:`SnsRejected` unless ``doc`` (from :func:`message_parse`) is an authentic,
    fresh message of an allowed topic; :class:`SnsUnavailable` when that cannot be told now."""
    now = now or datetime.now(UTC)
    topic = doc["TopicArn"]
    if not allowed_topics:
        raise SnsRejected(f"topic {topic!r} is not allowed: SNS_ALLOWED_TOPIC_ARNS is empty")
    if topic not in allowed_topics:
        raise SnsRejected(f"topic {topic!r} is not in SNS_ALLOWED_TOPIC_ARNS")
    version = doc["SignatureVersion"]
    algorithm = SIGNATURE_HASHES.get(version)
    if algorithm is None:
        raise SnsRejected(f"SignatureVersion {version!r} is not 1 or 2")
    cert_url = doc["SigningCertURL"]
    if not signing_cert_url_allowed(cert_url):
        raise SnsRejected(f"SigningCertURL {cert_url!r} is not https://sns.<region>.amazonaws.com/...pem")
    if doc["Type"] == SUBSCRIPTION_CONFIRMATION and not subscribe_url_allowed(doc["SubscribeURL"]):
        raise SnsRejected(f"SubscribeURL {doc['SubscribeURL']!r} is not https on an SNS host")
    timestamp = timestamp_parse(doc["Timestamp"])
    if timestamp is None:  # message_parse checked it; kept for callers that did not
        raise SnsRejected(f"Timestamp {doc['Timestamp']!r} is not a time")
    if now - timestamp > MAX_AGE:
        raise SnsRejected(f"Timestamp {doc['Timestamp']} is older than {MAX_AGE} (replay guard)")
    if timestamp - now > MAX_SKEW:
        raise SnsRejected(f"Timestamp {doc['Timestamp']} is more than {MAX_SKEW} in the future")
    try:
        signature = base64.b64decode(doc["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise SnsRejected("Signature is not base64") from None
    key = _signing_key(cert_url, now=now)
    try:
        key.verify(signature, string_to_sign(doc), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise SnsRejected(f"signature (version {version}) does not verify with {cert_url}") from None
