"""The SNS HTTPS endpoint (/sns/): messages signed here exactly as SNS signs them, with a locally
generated key and certificate that the test serves to the verifier in place of the network."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import logging
import threading
import urllib.error
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from roster.dev.chime import ACCOUNT, as_envelope, as_sns, meeting_stream
from roster.models import Attendee, Event, Meeting, Quarantine
from roster.sources import sns

pytestmark = pytest.mark.django_db

TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:chime-events"
OTHER_TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:someone-elses"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem"
SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425c464de12884c0"
)

# The signed keys per type, written out from the AWS documentation (not taken from roster.sources.sns).
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_KEYS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")


# --- keys, certificates, signing ------------------------------------------------------------------


def self_signed(key: rsa.RSAPrivateKey, *, valid_for: dt.timedelta = dt.timedelta(days=1)) -> bytes:
    """A self-signed certificate valid from a day ago until ``valid_for`` from now."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + valid_for)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def certificate_pem(signing_key) -> bytes:
    return self_signed(signing_key)


@pytest.fixture(autouse=True)
def sns_settings(settings):
    settings.SNS_ALLOWED_TOPIC_ARNS = [TOPIC]
    sns.certificate_cache_clear()
    yield settings
    sns.certificate_cache_clear()


@pytest.fixture
def fetches(monkeypatch, certificate_pem) -> list[str]:
    """Serves the local certificate for ANY URL asked (so a URL check that let something through
    would show as a 200) and records every fetch."""
    asked: list[str] = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return certificate_pem

    monkeypatch.setattr(sns, "certificate_fetch", fetch)
    return asked


@pytest.fixture
def confirms(monkeypatch) -> list[str]:
    visited: list[str] = []
    monkeypatch.setattr(sns, "subscription_confirm", visited.append)
    return visited


def now_iso(delta: dt.timedelta = dt.timedelta(0)) -> str:
    moment = dt.datetime.now(dt.UTC) + delta
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def sign(doc: dict[str, Any], key: rsa.RSAPrivateKey, *, version: str = "1") -> dict[str, Any]:
    """Sign as SNS does: "Key\\nValue\\n" per signed key (Subject only if present), RSA PKCS#1 v1.5
    with SHA1 (version 1) or SHA256 (version 2), base64."""
    keys = NOTIFICATION_KEYS if doc["Type"] == "Notification" else CONFIRMATION_KEYS
    text = "".join(f"{k}\n{doc[k]}\n" for k in keys if k in doc)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text.encode("utf-8"), padding.PKCS1v15(), algorithm)
    return {**doc, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}


def notification(
    message: str,
    *,
    key: rsa.RSAPrivateKey,
    version: str = "1",
    topic: str = TOPIC,
    cert_url: str = CERT_URL,
    timestamp: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    doc = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic,
        "Message": message,
        "Timestamp": timestamp or now_iso(),
        "SigningCertURL": cert_url,
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic}:1",
        **extra,
    }
    return sign(doc, key, version=version)


def detail_notification(detail: dict[str, Any], *, key: rsa.RSAPrivateKey, version: str = "1") -> dict:
    """roster.dev.chime.as_sns, made current and signed."""
    doc = json.loads(as_sns(detail))
    assert doc["TopicArn"] == TOPIC
    doc.update(Timestamp=now_iso(), SigningCertURL=CERT_URL)
    return sign(doc, key, version=version)


def confirmation(
    *, key: rsa.RSAPrivateKey, kind: str = "SubscriptionConfirmation", version: str = "1", **extra: Any
) -> dict:
    doc = {
        "Type": kind,
        "MessageId": str(uuid.uuid4()),
        "Token": "2336412f37fb687f5d51e6e2425c464de12884c0",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
        "SubscribeURL": SUBSCRIBE_URL,
        "Timestamp": now_iso(),
        "SigningCertURL": CERT_URL,
        **extra,
    }
    return sign(doc, key, version=version)


def post(client, doc: dict[str, Any] | str | bytes, *, kind: str | None = None):
    body = doc if isinstance(doc, str | bytes) else json.dumps(doc)
    kind = kind or (doc["Type"] if isinstance(doc, dict) else "Notification")
    return client.post(
        "/sns/",
        data=body,
        # What SNS sends is "text/plain; charset=UTF-8"; the test client would re-encode bytes
        # that are not UTF-8 for a charset not spelled "utf-8".
        content_type="text/plain; charset=utf-8",
        headers={"x-amz-sns-message-type": kind},
    )


# --- notifications --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_notifications_reach_the_roster(client, fetches, signing_key, version):
    details = meeting_stream(seed=40 + int(version), attendees=2, end=False)[:9]
    # MeetingStarted, TranscriptionStarted, MediaPipelineInProgress, then Added/Authorized/Joined x2
    docs = [detail_notification(d, key=signing_key, version=version) for d in details]
    for doc in docs:
        response = post(client, doc)
        assert response.status_code == 200, response.content
        assert response.json()["applied"] == 1

    assert fetches == [CERT_URL]  # nine messages, one certificate fetch: cached
    meeting_id = details[0]["meetingId"]
    assert Event.objects.filter(meeting_id=meeting_id).count() == 9
    event = Event.objects.get(meeting_id=meeting_id, event_type="chime:MeetingStarted")
    assert event.queue == f"sns:{TOPIC}"
    assert event.sqs_message_id == docs[0]["MessageId"]
    assert event.account == ACCOUNT
    rows = Attendee.objects.filter(meeting__meeting_id=meeting_id).order_by("attendee_id")
    assert [(a.attendee_id, a.presence) for a in rows] == [
        (f"att-{40 + int(version)}-0", "joined"),
        (f"att-{40 + int(version)}-1", "joined"),
    ]
    assert Meeting.objects.get(meeting_id=meeting_id).status == "active"
    assert not Quarantine.objects.exists()


def test_subject_is_signed_when_present(client, fetches, signing_key):
    detail = meeting_stream(seed=50, attendees=1)[0]
    doc = notification(as_envelope(detail), key=signing_key, version="2", Subject="Chime event")
    assert post(client, doc).status_code == 200
    assert Event.objects.filter(meeting_id=detail["meetingId"]).count() == 1

    forged = {**doc, "Subject": "something else"}
    assert post(client, forged).status_code == 403


def test_same_notification_twice_is_one_event(client, fetches, signing_key):
    detail = meeting_stream(seed=51, attendees=1)[0]
    doc = detail_notification(detail, key=signing_key)
    first, second = post(client, doc), post(client, doc)  # an SNS retry: same MessageId, same body
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == {"status": "ok", "applied": 0, "duplicates": 1, "quarantined": 0}
    event = Event.objects.get(meeting_id=detail["meetingId"])
    assert event.duplicate_count == 1
    assert len(fetches) == 1


def test_signed_notification_with_bad_inner_json_is_quarantined(client, fetches, signing_key):
    doc = notification('{"detail-type": "Chime Meeting State Change", ', key=signing_key)
    response = post(client, doc)
    assert response.status_code == 200  # kept durably: SNS must not retry it
    assert response.json()["quarantined"] == 1
    row = Quarantine.objects.get()
    assert row.reason_code == "not_json"
    assert row.queue == f"sns:{TOPIC}"
    assert row.sqs_message_id == doc["MessageId"]
    assert json.loads(row.body_text)["MessageId"] == doc["MessageId"]  # the whole SNS body
    assert not Event.objects.exists()


def test_a_quarantined_notification_retried_by_sns_is_one_row_counting_both(client, fetches, signing_key):
    """SNS retries when it hears no 2xx in time (our answer lost, say): the same body again. The
    body's digest identifies it; the same Message under a new MessageId is another message."""
    doc = notification('{"detail-type": "Chime Meeting State Change", ', key=signing_key)
    first, second = post(client, doc), post(client, doc)
    assert first.json()["quarantined"] == second.json()["quarantined"] == 1  # messages, not rows
    row = Quarantine.objects.get()
    assert (row.deliveries, row.sqs_message_id) == (2, doc["MessageId"])
    post(client, notification(doc["Message"], key=signing_key))
    assert sorted(Quarantine.objects.values_list("deliveries", flat=True)) == [1, 2]


# --- confirmations ----------------------------------------------------------------------------------


def test_subscription_confirmation_for_an_allowed_topic_is_confirmed(client, fetches, confirms, signing_key):
    response = post(client, confirmation(key=signing_key))
    assert response.status_code == 200
    assert confirms == [SUBSCRIBE_URL]


def test_subscription_confirmation_for_another_topic_is_refused(
    client, fetches, confirms, signing_key, caplog
):
    doc = confirmation(key=signing_key, TopicArn=OTHER_TOPIC)
    with caplog.at_level(logging.WARNING, logger="roster.sources.sns"):
        response = post(client, doc)
    assert response.status_code == 403
    assert confirms == [] and fetches == []
    assert any(OTHER_TOPIC in r.getMessage() and r.name == "roster.sources.sns" for r in caplog.records)


def test_no_topic_is_allowed_by_default(client, fetches, confirms, signing_key, settings):
    settings.SNS_ALLOWED_TOPIC_ARNS = []
    assert post(client, confirmation(key=signing_key)).status_code == 403
    detail = meeting_stream(seed=52, attendees=1)[0]
    assert post(client, detail_notification(detail, key=signing_key)).status_code == 403
    assert confirms == [] and fetches == []
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "subscribe_url",
    [
        "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x",
        "https://sns.us-east-1.amazonaws.com.evil.com/?Action=ConfirmSubscription&Token=x",
        "https://evil.com/sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=x",
    ],
)
def test_subscription_confirmation_to_a_foreign_url_is_refused(
    client, fetches, confirms, signing_key, subscribe_url
):
    doc = confirmation(key=signing_key, SubscribeURL=subscribe_url)  # correctly signed
    assert post(client, doc).status_code == 403
    assert confirms == []


def test_subscription_confirmation_that_could_not_be_confirmed_is_retried(
    client, fetches, signing_key, monkeypatch
):
    def unreachable(url: str) -> None:
        raise urllib.error.URLError("timed out")

    monkeypatch.setattr(sns, "subscription_confirm", unreachable)
    assert post(client, confirmation(key=signing_key)).status_code == 503


def test_unsubscribe_confirmation_is_logged(client, fetches, confirms, signing_key, caplog):
    doc = confirmation(key=signing_key, kind="UnsubscribeConfirmation")
    with caplog.at_level(logging.INFO, logger="roster.sources.sns"):
        response = post(client, doc)
    assert response.status_code == 200
    assert confirms == []  # never visits the URL
    assert any("UnsubscribeConfirmation" in r.getMessage() for r in caplog.records)


# --- refusals: 403, logged, nothing stored ----------------------------------------------------------


def test_tampered_message_is_refused_and_logged(client, fetches, signing_key, caplog):
    detail = meeting_stream(seed=53, attendees=1)[0]
    doc = detail_notification(detail, key=signing_key)
    tampered = {**doc, "Message": doc["Message"].replace("room-53", "room-99")}
    with caplog.at_level(logging.WARNING, logger="roster.sources.sns"):
        response = post(client, tampered)
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden"}  # the reason is logged, not told
    warnings = [r for r in caplog.records if r.name == "roster.sources.sns" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "does not verify" in warnings[0].getMessage()
    assert doc["MessageId"] in warnings[0].getMessage()
    assert not Event.objects.exists() and not Quarantine.objects.exists()


def test_message_signed_with_another_key_is_refused(client, fetches, other_key):
    detail = meeting_stream(seed=54, attendees=1)[0]
    assert post(client, detail_notification(detail, key=other_key, version="2")).status_code == 403
    assert not Event.objects.exists()


def test_version_1_signature_claimed_as_version_2_is_refused(client, fetches, signing_key):
    detail = meeting_stream(seed=55, attendees=1)[0]
    doc = detail_notification(detail, key=signing_key, version="1")
    assert post(client, {**doc, "SignatureVersion": "2"}).status_code == 403


@pytest.mark.parametrize("version", ["3", "0", "", "1.0"])
def test_unknown_signature_version_is_refused(client, fetches, signing_key, version):
    detail = meeting_stream(seed=56, attendees=1)[0]
    doc = detail_notification(detail, key=signing_key, version="2")
    assert post(client, {**doc, "SignatureVersion": version}).status_code == 403
    assert fetches == []


@pytest.mark.parametrize(
    "cert_url",
    [
        "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-x.pem",
        "https://evil.com/sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.txt",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem?x=.pem",
        "https://sns.us-east-1.amazonaws.com@evil.com/SimpleNotificationService-x.pem",
        "https://evil.com@sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-x.pem",
        "https://sns.us-east-1.amazonaws.com\n/SimpleNotificationService-x.pem",
        "https://s3.amazonaws.com/sns.us-east-1.amazonaws.com/x.pem",
        "https://evilsns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com.cn.evil.com/x.pem",
        "file:///etc/ssl/cert.pem",
        # Hosts on amazonaws.com that are not SNS: S3 serves anyone's bucket named "sns" there.
        "https://sns.s3.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.s3-website-us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.s3-us-west-2.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.execute-api.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.elb.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.xx-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-east.amazonaws.com/SimpleNotificationService-x.pem",
        "https://sns.us-east-1.amazonaws.com.cn/SimpleNotificationService-x.pem",  # not a China region
        "https://sns.cn-north-1.amazonaws.com/SimpleNotificationService-x.pem",  # China is .com.cn
    ],
)
def test_signing_cert_url_off_sns_is_refused_without_a_fetch(client, fetches, signing_key, cert_url):
    detail = meeting_stream(seed=57, attendees=1)[0]
    doc = notification(as_envelope(detail), key=signing_key, cert_url=cert_url)
    assert post(client, doc).status_code == 403
    assert fetches == []  # the fetcher would have served a good certificate
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "url",
    [
        CERT_URL,
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.cn-northwest-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
        "https://sns.me-central-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.il-central-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.ap-southeast-5.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.mx-central-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com:443/SimpleNotificationService-abc.pem",
    ],
)
def test_sns_certificate_urls_are_allowed(url):
    assert sns.signing_cert_url_allowed(url)


@pytest.mark.parametrize("age", [dt.timedelta(hours=-2), dt.timedelta(minutes=-61), dt.timedelta(hours=1)])
def test_stale_or_future_timestamp_is_refused(client, fetches, signing_key, age, caplog):
    detail = meeting_stream(seed=58, attendees=1)[0]
    doc = notification(as_envelope(detail), key=signing_key, timestamp=now_iso(age))
    with caplog.at_level(logging.WARNING, logger="roster.sources.sns"):
        assert post(client, doc).status_code == 403
    (warning,) = [r for r in caplog.records if r.name == "roster.sources.sns"]
    assert "Timestamp" in warning.getMessage()
    assert not Event.objects.exists()


def test_recent_timestamp_is_accepted(client, fetches, signing_key):
    detail = meeting_stream(seed=59, attendees=1)[0]
    doc = notification(as_envelope(detail), key=signing_key, timestamp=now_iso(dt.timedelta(minutes=-50)))
    assert post(client, doc).status_code == 200


def test_certificate_that_is_not_a_certificate_is_refused(client, monkeypatch, signing_key):
    monkeypatch.setattr(sns, "certificate_fetch", lambda url: b"-----BEGIN CERTIFICATE-----\nnope\n")
    detail = meeting_stream(seed=60, attendees=1)[0]
    assert post(client, detail_notification(detail, key=signing_key)).status_code == 403


def test_expired_certificate_is_refused(client, monkeypatch, signing_key):
    expired = self_signed(signing_key, valid_for=dt.timedelta(minutes=-1))
    monkeypatch.setattr(sns, "certificate_fetch", lambda url: expired)
    detail = meeting_stream(seed=61, attendees=1)[0]
    assert post(client, detail_notification(detail, key=signing_key)).status_code == 403


def test_certificate_host_down_answers_503_and_is_not_cached(
    client, monkeypatch, signing_key, certificate_pem
):
    calls: list[str] = []

    def down(url: str) -> bytes:
        calls.append(url)
        raise urllib.error.URLError("connection refused")

    monkeypatch.setattr(sns, "certificate_fetch", down)
    detail = meeting_stream(seed=62, attendees=1)[0]
    doc = detail_notification(detail, key=signing_key)
    assert post(client, doc).status_code == 503  # SNS retries a 5xx, drops a 4xx
    assert not Event.objects.exists()

    monkeypatch.setattr(sns, "certificate_fetch", lambda url: certificate_pem)
    assert post(client, doc).status_code == 200  # the retry gets through


def test_certificate_not_found_is_refused(client, monkeypatch, signing_key):
    def not_found(url: str) -> bytes:
        raise urllib.error.HTTPError(url, 404, "Not Found", None, None)

    monkeypatch.setattr(sns, "certificate_fetch", not_found)
    detail = meeting_stream(seed=63, attendees=1)[0]
    assert post(client, detail_notification(detail, key=signing_key)).status_code == 403


def test_signature_that_is_not_base64_is_refused(client, fetches, signing_key):
    detail = meeting_stream(seed=64, attendees=1)[0]
    doc = detail_notification(detail, key=signing_key)
    assert post(client, {**doc, "Signature": "not base64!"}).status_code == 403


# --- malformed requests ---------------------------------------------------------------------------


def test_malformed_requests_are_400(client, fetches, signing_key):
    detail = meeting_stream(seed=65, attendees=1)[0]
    doc = detail_notification(detail, key=signing_key)
    assert post(client, "{not json").status_code == 400
    assert post(client, "[1, 2]").status_code == 400
    assert post(client, b"\xff\xfe").status_code == 400
    assert post(client, {k: v for k, v in doc.items() if k != "MessageId"}).status_code == 400
    assert post(client, {**doc, "Type": "Gossip"}, kind="Gossip").status_code == 400
    assert post(client, {**doc, "Timestamp": "yesterday"}).status_code == 400
    assert post(client, {**doc, "TopicArn": 7}).status_code == 400
    assert post(client, doc, kind="SubscriptionConfirmation").status_code == 400  # header disagrees
    no_header = client.post("/sns/", data=json.dumps(doc), content_type="text/plain")
    assert no_header.status_code == 400
    assert fetches == []
    assert not Event.objects.exists() and not Quarantine.objects.exists()


def test_oversized_body_is_413(client, fetches, signing_key, settings):
    settings.MAX_MESSAGE_BYTES = 1024
    doc = notification("x" * (1024 + 64 * 1024 + 1), key=signing_key)
    assert post(client, doc).status_code == 413
    assert fetches == []


def test_body_over_max_message_bytes_but_within_the_allowance_is_quarantined(
    client, fetches, signing_key, settings
):
    settings.MAX_MESSAGE_BYTES = 1024
    detail = {**meeting_stream(seed=66, attendees=1)[0], "padding": "x" * 2048}
    doc = notification(as_envelope(detail), key=signing_key)
    response = post(client, doc)
    assert response.status_code == 200
    assert Quarantine.objects.get().reason_code == "too_large"


def test_get_is_not_allowed(client):
    assert client.get("/sns/").status_code == 405


# --- the real fetch: no redirects, bounded size ---------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/redirect.pem":
            self.send_response(302)
            self.send_header("Location", "/cert.pem")
            self.end_headers()
            return
        data = b"x" * (sns.MAX_CERTIFICATE_BYTES + 1) if self.path == "/big.pem" else b"PEM"
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def local_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_certificate_fetch_refuses_redirects_and_large_answers(local_server):
    # certificate_fetch is only ever called with a URL that passed signing_cert_url_allowed; a
    # plain HTTP loopback server here exercises the transport rules alone.
    assert sns.certificate_fetch(f"{local_server}/cert.pem") == b"PEM"
    with pytest.raises(urllib.error.HTTPError) as redirect:
        sns.certificate_fetch(f"{local_server}/redirect.pem")
    assert redirect.value.code == 302
    with pytest.raises(urllib.error.HTTPError) as big:
        sns.certificate_fetch(f"{local_server}/big.pem")
    assert big.value.code == 413
