"""A local Chime SDK Meetings endpoint for the tests and the demo (moto has none).

Reconcile asks the Chime SDK Meetings API what the event stream lost (../shared/ROSTER.md, "Repairs
from the Chime API"), and nothing here reaches AWS. This is a small HTTP server on loopback that
speaks the operations' REST-JSON protocol as botocore's service model (chime-sdk-meetings
2021-07-15) defines them, so unchanged boto3 code reaches it through
``AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS`` (or ``endpoint_url``):

- CreateMeeting (``POST /meetings``, with PrimaryMeetingId for a replica), GetMeeting and
  DeleteMeeting (``GET``/``DELETE /meetings/{MeetingId}``), CreateAttendee, ListAttendees
  (``max-results``, ``next-token``), GetAttendee and DeleteAttendee
  (``/meetings/{MeetingId}/attendees[/{AttendeeId}]``).
- Errors as Chime sends them: the status, an ``x-amzn-ErrorType`` header naming the modeled
  exception and a JSON body (``Code``, ``Message``, ``RequestId``), so boto3 raises
  ``client.exceptions.NotFoundException`` and its retry modes see ``ThrottlingException``.
- A meeting is visible only in the control region that created it: the region of the request's
  SigV4 credential scope (``Credential=KEY/DATE/REGION/chime/aws4_request``). Signatures are not
  checked; a request without one answers ForbiddenException.
- Chime's limits: 250 attendees per meeting (or MeetingFeatures.Attendee.MaxCount), 4 replicas per
  primary (the default service quota, up to 40 on request: ``max_replicas``), a replica of a
  replica refused; DeleteMeeting deletes the meeting's attendees.
- An account-wide calls-per-second budget (a token bucket, off unless set) above which a call
  answers 429 ThrottlingException, and faults injected on demand.

A simulator in another process (the demo's) mirrors what happened through one control route that
is not Chime's: ``POST /_control/mirror`` with a JSON list of event details (:func:`mirror_post`).

Not modelled: meetings ending by themselves (no one joined for 5 minutes, 24 hours), what a
replica does when its primary ends, BatchCreateAttendee, CreateMeetingWithAttendees, tags,
transcription, and any media. Tests and the simulator drive the state in process through
:class:`ChimeApi` (``meeting_end``, ``meeting_put``, ``attendee_put``, ``throttle``, ``fault``,
``calls``); run alone: ``python -m roster.dev.chime_api --port 5100`` prints its URL.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import secrets
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from roster.dev.servers import BackgroundServer, serve_until_stopped

ACCOUNT_ID = "123456789012"
# CreateMeeting's MediaRegion values (the service model's documentation lists them).
MEDIA_REGIONS = frozenset(
    {
        "af-south-1",
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-south-1",
        "ap-southeast-1",
        "ap-southeast-2",
        "ca-central-1",
        "eu-central-1",
        "eu-north-1",
        "eu-south-1",
        "eu-west-1",
        "eu-west-2",
        "eu-west-3",
        "sa-east-1",
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "us-gov-east-1",
        "us-gov-west-1",
    }
)
ATTENDEES_PER_MEETING = 250  # the model's AttendeeMax, Chime's fixed per-meeting limit
REPLICAS_PER_PRIMARY = 4  # the default quota "replica meetings per primary meeting" (40 on request)
LIST_PAGE_MAX = 100  # the model's ResultMax
LIST_PAGE_DEFAULT = 10  # the model gives none: small, so a caller that ignores NextToken shows it
CAPABILITIES = ("SendReceive", "Send", "Receive", "None")
GUID = re.compile(r"^[a-fA-F0-9]{8}(?:-[a-fA-F0-9]{4}){3}-[a-fA-F0-9]{12}$")
# The control route of the simulator (another process): what happened, mirrored (_mirror).
MIRROR_PATH = "/_control/mirror"
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")

# The modeled exceptions: HTTP status and the short code Chime writes in the body.
ERRORS: dict[str, tuple[int, str]] = {
    "BadRequestException": (400, "BadRequest"),
    "LimitExceededException": (400, "ResourceLimitExceeded"),
    "UnauthorizedException": (401, "Unauthorized"),
    "ForbiddenException": (403, "Forbidden"),
    "NotFoundException": (404, "NotFound"),
    "ConflictException": (409, "Conflict"),
    "UnprocessableEntityException": (422, "UnprocessableEntity"),
    "ThrottlingException": (429, "Throttling"),
    "ServiceFailureException": (500, "ServiceFailure"),
    "ServiceUnavailableException": (503, "ServiceUnavailable"),
}

# (method, path pattern, operation), in the model's terms.
_MEETING = r"/meetings/(?P<MeetingId>[^/]+)"
ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/meetings$"), "CreateMeeting"),
    ("GET", re.compile(rf"^{_MEETING}$"), "GetMeeting"),
    ("DELETE", re.compile(rf"^{_MEETING}$"), "DeleteMeeting"),
    ("POST", re.compile(rf"^{_MEETING}/attendees$"), "CreateAttendee"),
    ("GET", re.compile(rf"^{_MEETING}/attendees$"), "ListAttendees"),
    ("GET", re.compile(rf"^{_MEETING}/attendees/(?P<AttendeeId>[^/]+)$"), "GetAttendee"),
    ("DELETE", re.compile(rf"^{_MEETING}/attendees/(?P<AttendeeId>[^/]+)$"), "DeleteAttendee"),
)


class ChimeError(Exception):
    """An answer that is one of the model's exceptions (``code`` is its shape name)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        assert code in ERRORS, code
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return ERRORS[self.code][0]


def _bad(message: str) -> ChimeError:
    return ChimeError("BadRequestException", message)


@dataclass
class Attendee:
    attendee_id: str
    external_user_id: str
    join_token: str
    capabilities: dict[str, str]
    seq: int  # creation order: ListAttendees pages follow it, so a deletion skips no one

    def shape(self) -> dict[str, Any]:
        return {
            "ExternalUserId": self.external_user_id,
            "AttendeeId": self.attendee_id,
            "JoinToken": self.join_token,
            "Capabilities": dict(self.capabilities),
        }


@dataclass
class Meeting:
    meeting_id: str
    region: str  # the control region: the only one where the meeting is visible
    external_meeting_id: str | None
    media_region: str
    meeting_host_id: str | None = None
    primary_meeting_id: str | None = None
    tenant_ids: list[str] | None = None
    features: dict[str, Any] | None = None
    client_request_token: str | None = None
    attendees: dict[str, Attendee] = field(default_factory=dict)

    @property
    def attendee_limit(self) -> int:
        return int(((self.features or {}).get("Attendee") or {}).get("MaxCount") or ATTENDEES_PER_MEETING)

    def shape(self) -> dict[str, Any]:
        """The model's Meeting structure, with media URLs in Chime's form (nothing listens there)."""
        mid, short = self.meeting_id, _region_short(self.media_region)
        host = f"m1.{short}.app.chime.aws"
        placement = {
            "AudioHostUrl": f"{hashlib.md5(mid.encode()).hexdigest()}.k.{host}:3478",
            "AudioFallbackUrl": f"wss://haxrp.{host}:443/calls/{mid}",
            "SignalingUrl": f"wss://signal.{host}/control/{mid}",
            "TurnControlUrl": f"https://2713.cell.{self.media_region}.meetings.chime.aws/v2/turn_sessions",
            "ScreenDataUrl": f"wss://bitpw.{host}:443/v2/screen/{mid}",
            "ScreenViewingUrl": f"wss://bitpw.{host}:443/ws/connect?passcode=null&viewer_uuid=null&X-BitHub-Call-Id={mid}",
            "ScreenSharingUrl": f"wss://bitpw.{host}:443/v2/screen/{mid}",
            "EventIngestionUrl": f"https://data.svc.{short}.ingest.chime.aws/v1/client-events",
        }
        shape: dict[str, Any] = {
            "MeetingId": mid,
            "ExternalMeetingId": self.external_meeting_id,
            "MediaRegion": self.media_region,
            "MediaPlacement": placement,
            "MeetingArn": f"arn:aws:chime:{self.region}:{ACCOUNT_ID}:meeting/{mid}",
        }
        optional = {
            "MeetingHostId": self.meeting_host_id,
            "MeetingFeatures": self.features,
            "PrimaryMeetingId": self.primary_meeting_id,
            "TenantIds": self.tenant_ids,
        }
        shape.update({key: value for key, value in optional.items() if value is not None})
        return shape


def _region_short(region: str) -> str:
    """us-east-1 -> ue1, as Chime's media hosts name regions."""
    parts = region.split("-")
    return "".join(part[0] for part in parts[:-1]) + parts[-1]


class TokenBucket:
    """``per_second`` calls on average, ``burst`` at once: Chime's per-account request rate."""

    def __init__(self, per_second: float, burst: int | None = None) -> None:
        self.per_second = float(per_second)
        self.burst = float(burst if burst is not None else max(1, round(per_second)))
        self.tokens = self.burst
        self.last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.per_second)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def _length(name: str, value: object, low: int, high: int) -> str:
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise _bad(f"{name} must be a string of {low} to {high} characters")
    return value


class ChimeApi:
    """The endpoint's state and operations, without HTTP; every method is thread safe.

    The operations take the control region and the request's parameters and return the
    response's JSON, or raise :class:`ChimeError`. The control methods (``meeting_end``,
    ``meeting_put``, ``attendee_put``, ``throttle``, ``fault``, ``calls``) are for tests and the
    simulator: they change the state as Chime would, without a call and without a budget.
    """

    def __init__(
        self,
        *,
        calls_per_second: float | None = None,
        burst: int | None = None,
        max_replicas: int = REPLICAS_PER_PRIMARY,
    ) -> None:
        self.max_replicas = max_replicas
        self._lock = threading.Lock()
        self._meetings: dict[str, Meeting] = {}
        self._by_token: dict[tuple[str, str], str] = {}
        self._seq = 0
        self._bucket = TokenBucket(calls_per_second, burst) if calls_per_second else None
        self._faults: deque[tuple[str | None, str]] = deque()
        self._calls: Counter[str] = Counter()
        self._throttled: Counter[str] = Counter()

    # --- control ----------------------------------------------------------------------------

    def throttle(self, per_second: float | None, burst: int | None = None) -> None:
        """Answer ThrottlingException above ``per_second`` calls (None: no budget)."""
        with self._lock:
            self._bucket = TokenBucket(per_second, burst) if per_second else None

    def fault(
        self, code: str = "ServiceUnavailableException", *, operation: str | None = None, times: int = 1
    ) -> None:
        """The next ``times`` calls (of ``operation``, or any) answer the exception ``code``."""
        if code not in ERRORS:
            raise ValueError(f"not a modeled exception: {code}")
        with self._lock:
            self._faults.extend([(operation, code)] * times)

    @property
    def calls(self) -> dict[str, int]:
        """Calls received per operation, throttled and faulted ones included."""
        with self._lock:
            return dict(self._calls)

    @property
    def throttled(self) -> dict[str, int]:
        """Calls answered ThrottlingException by the budget, per operation."""
        with self._lock:
            return dict(self._throttled)

    def meeting_end(self, meeting_id: str) -> bool:
        """End a meeting as Chime does (auto end, DeleteMeeting elsewhere): it and its attendees
        are gone. False when there was no such meeting."""
        with self._lock:
            return self._meetings.pop(meeting_id, None) is not None

    def meeting_put(
        self,
        *,
        region: str = "us-east-1",
        meeting_id: str | None = None,
        external_meeting_id: str | None = None,
        media_region: str | None = None,
        primary_meeting_id: str | None = None,
    ) -> str:
        """A meeting that exists as if created in ``region`` (with the simulator's own id)."""
        meeting_id = meeting_id or str(uuid.uuid4())
        with self._lock:
            if primary_meeting_id is not None:
                self._replica_check(region, primary_meeting_id)
            self._meetings[meeting_id] = Meeting(
                meeting_id=meeting_id,
                region=region,
                external_meeting_id=external_meeting_id,
                media_region=media_region or region,
                primary_meeting_id=primary_meeting_id,
            )
        return meeting_id

    def attendee_put(
        self,
        meeting_id: str,
        *,
        external_user_id: str,
        attendee_id: str | None = None,
        capabilities: dict[str, str] | None = None,
    ) -> str:
        """An attendee of an existing meeting (any region), with the simulator's own id."""
        with self._lock:
            meeting = self._meetings.get(meeting_id)
            if meeting is None:
                raise KeyError(meeting_id)
            return self._attendee_add(meeting, external_user_id, capabilities, attendee_id).attendee_id

    def attendee_remove(self, meeting_id: str, attendee_id: str) -> bool:
        """Delete an attendee as Chime does on AttendeeDeleted (not a call: no count, no throttle).
        False when there was no such attendee."""
        with self._lock:
            meeting = self._meetings.get(meeting_id)
            return meeting is not None and meeting.attendees.pop(attendee_id, None) is not None

    def meeting_ids(self, region: str | None = None) -> list[str]:
        with self._lock:
            return [m.meeting_id for m in self._meetings.values() if region in (None, m.region)]

    def attendee_ids(self, meeting_id: str) -> list[str]:
        with self._lock:
            meeting = self._meetings.get(meeting_id)
            return list(meeting.attendees) if meeting else []

    # --- the operations ---------------------------------------------------------------------

    def admit(self, operation: str) -> None:
        """Count the call, then answer an injected fault or the budget's ThrottlingException."""
        with self._lock:
            self._calls[operation] += 1
            for index, (only, code) in enumerate(self._faults):
                if only in (None, operation):
                    del self._faults[index]
                    raise ChimeError(code, f"Injected {code} for {operation}")
            if self._bucket is not None and not self._bucket.take():
                self._throttled[operation] += 1
                raise ChimeError("ThrottlingException", "Rate exceeded")

    def create_meeting(self, region: str, body: dict[str, Any]) -> dict[str, Any]:
        token = _length("ClientRequestToken", body.get("ClientRequestToken"), 2, 64)
        media_region = body.get("MediaRegion")
        if media_region not in MEDIA_REGIONS:
            raise _bad(f"Invalid MediaRegion: {media_region!r}")
        external = _length("ExternalMeetingId", body.get("ExternalMeetingId"), 2, 64)
        if external.lower().startswith("aws:"):
            raise _bad("ExternalMeetingId values that begin with aws: are reserved")
        host = body.get("MeetingHostId")
        if host is not None:
            _length("MeetingHostId", host, 2, 64)
        tenants = body.get("TenantIds")
        if tenants is not None and (
            not isinstance(tenants, list)
            or not 1 <= len(tenants) <= 5
            or not all(isinstance(t, str) and 2 <= len(t) <= 256 for t in tenants)
        ):
            raise _bad("TenantIds must hold 1 to 5 ids of 2 to 256 characters")
        features = body.get("MeetingFeatures")
        if features is not None:
            _features_check(features)
        primary = body.get("PrimaryMeetingId")
        with self._lock:
            known = self._by_token.get((region, token))
            if known in self._meetings:  # ClientRequestToken: a retried request, the same meeting
                return {"Meeting": self._meetings[known].shape()}
            if primary is not None:
                self._replica_check(region, primary)
            meeting = Meeting(
                meeting_id=str(uuid.uuid4()),
                region=region,
                external_meeting_id=external,
                media_region=media_region,
                meeting_host_id=host,
                primary_meeting_id=primary,
                tenant_ids=tenants,
                features=features,
                client_request_token=token,
            )
            self._meetings[meeting.meeting_id] = meeting
            self._by_token[(region, token)] = meeting.meeting_id
            return {"Meeting": meeting.shape()}

    def get_meeting(self, region: str, meeting_id: str) -> dict[str, Any]:
        with self._lock:
            return {"Meeting": self._meeting(region, meeting_id).shape()}

    def delete_meeting(self, region: str, meeting_id: str) -> None:
        with self._lock:
            self._meeting(region, meeting_id)
            del self._meetings[meeting_id]  # its attendees with it

    def create_attendee(self, region: str, meeting_id: str, body: dict[str, Any]) -> dict[str, Any]:
        external = _length("ExternalUserId", body.get("ExternalUserId"), 2, 64)
        with self._lock:
            meeting = self._meeting(region, meeting_id)
            attendee = self._attendee_add(meeting, external, body.get("Capabilities"))
            return {"Attendee": attendee.shape()}

    def get_attendee(self, region: str, meeting_id: str, attendee_id: str) -> dict[str, Any]:
        with self._lock:
            return {"Attendee": self._attendee(region, meeting_id, attendee_id).shape()}

    def list_attendees(
        self, region: str, meeting_id: str, *, next_token: str | None, max_results: str | None
    ) -> dict[str, Any]:
        size = LIST_PAGE_DEFAULT
        if max_results is not None:
            if not max_results.isdigit() or not 1 <= int(max_results) <= LIST_PAGE_MAX:
                raise _bad(f"max-results must be between 1 and {LIST_PAGE_MAX}")
            size = int(max_results)
        after = _token_read(next_token) if next_token is not None else -1
        with self._lock:
            meeting = self._meeting(region, meeting_id)
            rest = [a for a in meeting.attendees.values() if a.seq > after]
            page = rest[:size]
            answer: dict[str, Any] = {"Attendees": [a.shape() for a in page]}
            if len(rest) > size:
                answer["NextToken"] = _token_write(page[-1].seq)
            return answer

    def delete_attendee(self, region: str, meeting_id: str, attendee_id: str) -> None:
        with self._lock:
            self._attendee(region, meeting_id, attendee_id)
            del self._meetings[meeting_id].attendees[attendee_id]

    # --- helpers (called with the lock held) ------------------------------------------------

    def _meeting(self, region: str, meeting_id: str) -> Meeting:
        if not GUID.match(meeting_id):
            raise _bad(f"Invalid meeting id: {meeting_id}")
        meeting = self._meetings.get(meeting_id)
        if meeting is None or meeting.region != region:
            raise ChimeError("NotFoundException", f"Meeting <{meeting_id}> not found")
        return meeting

    def _attendee(self, region: str, meeting_id: str, attendee_id: str) -> Attendee:
        meeting = self._meeting(region, meeting_id)
        if not GUID.match(attendee_id):
            raise _bad(f"Invalid attendee id: {attendee_id}")
        attendee = meeting.attendees.get(attendee_id)
        if attendee is None:
            raise ChimeError("NotFoundException", f"Attendee <{attendee_id}> not found")
        return attendee

    def _replica_check(self, region: str, primary_meeting_id: str) -> None:
        primary = self._meeting(region, primary_meeting_id)
        if primary.primary_meeting_id is not None:
            raise _bad(f"Meeting <{primary_meeting_id}> is a replica and cannot be a primary meeting")
        replicas = sum(1 for m in self._meetings.values() if m.primary_meeting_id == primary_meeting_id)
        if replicas >= self.max_replicas:
            raise ChimeError(
                "LimitExceededException",
                f"Meeting <{primary_meeting_id}> already has {replicas} replica meetings",
            )

    def _attendee_add(
        self,
        meeting: Meeting,
        external_user_id: str,
        capabilities: object,
        attendee_id: str | None = None,
    ) -> Attendee:
        for attendee in meeting.attendees.values():
            if attendee.external_user_id == external_user_id and attendee_id in (None, attendee.attendee_id):
                return attendee  # Chime answers a retried CreateAttendee with the same attendee
        caps = _capabilities(meeting, capabilities)
        if len(meeting.attendees) >= meeting.attendee_limit:
            raise ChimeError(
                "LimitExceededException",
                f"Meeting <{meeting.meeting_id}> already has {meeting.attendee_limit} attendees",
            )
        self._seq += 1
        attendee = Attendee(
            attendee_id=attendee_id or str(uuid.uuid4()),
            external_user_id=external_user_id,
            join_token=base64.b64encode(secrets.token_bytes(48)).decode(),
            capabilities=caps,
            seq=self._seq,
        )
        meeting.attendees[attendee.attendee_id] = attendee
        return attendee


def _features_check(features: object) -> None:
    if not isinstance(features, dict):
        raise _bad("MeetingFeatures must be a structure")
    max_count = (features.get("Attendee") or {}).get("MaxCount")
    if max_count is not None and (
        not isinstance(max_count, int) or not 1 <= max_count <= ATTENDEES_PER_MEETING
    ):
        raise _bad(f"MeetingFeatures.Attendee.MaxCount must be between 1 and {ATTENDEES_PER_MEETING}")


def _capabilities(meeting: Meeting, given: object) -> dict[str, str]:
    """The attendee's capabilities: Chime's defaults, or the given ones checked as Chime does."""
    features = meeting.features or {}
    no_video = (features.get("Video") or {}).get("MaxResolution") == "None"
    no_content = (features.get("Content") or {}).get("MaxResolution") == "None"
    if given is None:
        video = "None" if no_video and no_content else "Receive" if no_video else "SendReceive"
        return {"Audio": "SendReceive", "Video": video, "Content": "None" if no_content else "SendReceive"}
    if not isinstance(given, dict) or any(
        given.get(k) not in CAPABILITIES for k in ("Audio", "Video", "Content")
    ):
        raise _bad(f"Capabilities need Audio, Video and Content, each one of {', '.join(CAPABILITIES)}")
    caps = {k: given[k] for k in ("Audio", "Video", "Content")}
    receiving = ("SendReceive", "Receive")
    if caps["Content"] in receiving and caps["Video"] not in receiving:
        raise _bad("Content capability SendReceive or Receive needs Video SendReceive or Receive")
    if no_video and caps["Video"] != "None":
        raise _bad("The meeting's video MaxResolution is None: Video capability must be None")
    if no_content and caps["Content"] != "None":
        raise _bad("The meeting's content MaxResolution is None: Content capability must be None")
    return caps


def _token_write(seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": seq}).encode()).decode()


def _token_read(token: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["after"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _bad("Invalid next-token") from exc


# --- HTTP ------------------------------------------------------------------------------------


def request_region(authorization: str | None) -> str:
    """The control region of a request: its SigV4 credential scope's (a request unsigned, or
    signed for another service, is refused as AWS refuses it)."""
    match = CREDENTIAL_SCOPE.search(authorization or "")
    if match is None:
        raise ChimeError("ForbiddenException", "Missing Authentication Token")
    region, service = match.groups()
    if service != "chime":
        raise ChimeError("ForbiddenException", "Credential should be scoped to correct service: 'chime'")
    return region


def route(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """(operation, URI parameters) of a request line, or None."""
    for verb, pattern, operation in ROUTES:
        match = pattern.match(path)
        if verb == method and match:
            return operation, {k: unquote(v) for k, v in match.groupdict().items()}
    return None


def answer(
    api: ChimeApi, method: str, target: str, authorization: str | None, body: bytes
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request, as Chime's REST-JSON protocol writes them."""
    request_id = str(uuid.uuid4())
    headers = {"x-amzn-RequestId": request_id}
    if method == "POST" and urlsplit(target).path == MIRROR_PATH:
        return _mirror(api, body, headers)
    try:
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        found = route(method, url.path)
        if found is None or "operation" in query:
            raise _bad(f"The local endpoint has no operation {method} {url.path}")
        operation, uri = found
        api.admit(operation)
        region = request_region(authorization)
        status, result = 200, None
        if operation in ("CreateMeeting", "CreateAttendee"):
            try:
                params = json.loads(body or b"{}")
            except ValueError as exc:
                raise _bad("The request body is not JSON") from exc
            if not isinstance(params, dict):
                raise _bad("The request body is not a JSON object")
            if operation == "CreateMeeting":
                result = api.create_meeting(region, params)
            else:
                result = api.create_attendee(region, uri["MeetingId"], params)
        elif operation == "GetMeeting":
            result = api.get_meeting(region, uri["MeetingId"])
        elif operation == "DeleteMeeting":
            api.delete_meeting(region, uri["MeetingId"])
            status = 204
        elif operation == "ListAttendees":
            result = api.list_attendees(
                region,
                uri["MeetingId"],
                next_token=query.get("next-token"),
                max_results=query.get("max-results"),
            )
        elif operation == "GetAttendee":
            result = api.get_attendee(region, uri["MeetingId"], uri["AttendeeId"])
        else:  # DeleteAttendee
            api.delete_attendee(region, uri["MeetingId"], uri["AttendeeId"])
            status = 204
    except ChimeError as error:
        headers["x-amzn-ErrorType"] = f"{error.code}:http://internal.amazon.com/coral/com.amazonaws.chime/"
        headers["Content-Type"] = "application/json"
        payload = {"Code": ERRORS[error.code][1], "Message": error.message, "RequestId": request_id}
        return error.status, headers, json.dumps(payload).encode()
    if result is None:
        return status, headers, b""
    headers["Content-Type"] = "application/json"
    return status, headers, json.dumps(result).encode()


def _mirror(api: ChimeApi, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """The control route a simulator in another process uses (not a Chime operation: not counted,
    not throttled, unsigned): a JSON list of event details that happened, delivered or not, which
    :func:`roster.dev.chime.chime_api_mirror` applies to the state in order."""
    from roster.dev.chime import chime_api_mirror  # it imports this module

    try:
        details = json.loads(body or b"[]")
        if not isinstance(details, list) or not all(isinstance(d, dict) for d in details):
            raise ValueError("a JSON list of event details")
    except ValueError as exc:
        return 400, {**headers, "Content-Type": "text/plain"}, f"mirror: {exc}".encode()
    for doc in details:
        chime_api_mirror(api, doc)
    return 204, headers, b""


def mirror_post(url: str, details: list[dict[str, Any]], *, timeout: float = 5.0) -> None:
    """Send ``details`` to the endpoint at ``url`` (its :data:`MIRROR_PATH` control route)."""
    import urllib.request

    request = urllib.request.Request(
        url.rstrip("/") + MIRROR_PATH,
        data=json.dumps(details).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback, ours
        response.read()


class _Handler(BaseHTTPRequestHandler):
    """One connection (boto3 keeps it alive): every method goes through :func:`answer`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: _Server
    timeout = 60  # an idle kept-alive connection's thread ends after this

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = answer(
            self.server.api, self.command, self.path, self.headers.get("Authorization"), body
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and status != 204:
            self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:
            super().log_message(format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: ChimeApi, *, verbose: bool = False) -> None:
        super().__init__(address, _Handler)
        self.api = api
        self.verbose = verbose


class ChimeApiServer(BackgroundServer):
    """The endpoint on loopback in a background thread, on a free port unless one is given:
    ``with ChimeApiServer() as server: boto3.client(..., endpoint_url=server.url)``;
    ``server.api`` is its :class:`ChimeApi`."""

    thread_name = "chime-api"

    def __init__(self, api: ChimeApi | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.api = api or ChimeApi()
        super().__init__(_Server((host, port), self.api))


def server_command(*, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that starts this endpoint with the running interpreter (run in ROOT)."""
    return [sys.executable, "-m", "roster.dev.chime_api", "--host", host, "--port", str(port)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A local Chime SDK Meetings endpoint (REST-JSON).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--calls-per-second", type=float, default=None, help="the budget (default: none)")
    parser.add_argument("--burst", type=int, default=None, help="calls at once (default: one second's)")
    parser.add_argument("--max-replicas", type=int, default=REPLICAS_PER_PRIMARY)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    api = ChimeApi(calls_per_second=args.calls_per_second, burst=args.burst, max_replicas=args.max_replicas)
    httpd = _Server((args.host, args.port), api, verbose=args.verbose)
    serve_until_stopped(httpd, banner="Chime SDK Meetings endpoint on {url}")


if __name__ == "__main__":
    main()
