"""The local Chime SDK Meetings endpoint (roster.dev.chime_api), through unchanged boto3 over HTTP
on loopback: every operation, pagination, regions, replicas, limits, errors and throttling as
boto3 and its retry modes see them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from roster.dev import chime_api
from roster.dev.chime_api import ChimeApi, ChimeApiServer
from roster.dev.processes import ROOT, Supervisor, chime_api_start

pytestmark = pytest.mark.once

# botocore's retries "max_attempts" counts retries; "total_max_attempts" counts the first call too.
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture
def server() -> Iterator[ChimeApiServer]:
    with ChimeApiServer() as server:
        yield server


def client_of(server: ChimeApiServer, region: str = "us-east-1", config: Config = NO_RETRIES):
    return boto3.client(
        "chime-sdk-meetings",
        region_name=region,
        endpoint_url=server.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


@pytest.fixture
def chime(server):
    return client_of(server)


def meeting_create(chime, **extra) -> dict:
    params = {
        "ClientRequestToken": uuid.uuid4().hex,
        "MediaRegion": "us-east-1",
        "ExternalMeetingId": "standup",
    }
    return chime.create_meeting(**{**params, **extra})["Meeting"]


def every_attendee(chime, meeting_id: str, **extra) -> list[dict]:
    """ListAttendees, every page (the model has no paginator: follow NextToken)."""
    attendees, token = [], None
    while True:
        page = chime.list_attendees(MeetingId=meeting_id, **extra, **({"NextToken": token} if token else {}))
        attendees += page["Attendees"]
        token = page.get("NextToken")
        if not token:
            return attendees


def test_unchanged_boto3_code_reaches_it_through_the_environment(server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_CHIME_SDK_MEETINGS", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    chime = boto3.client("chime-sdk-meetings", region_name="us-east-1")
    meeting = meeting_create(chime)
    assert chime.get_meeting(MeetingId=meeting["MeetingId"])["Meeting"] == meeting
    assert server.api.calls == {"CreateMeeting": 1, "GetMeeting": 1}


def test_every_operation(chime, server):
    meeting = meeting_create(chime, MeetingHostId="host-1", TenantIds=["team-a"])
    mid = meeting["MeetingId"]
    assert meeting["ExternalMeetingId"] == "standup"
    assert meeting["MediaRegion"] == "us-east-1"
    assert meeting["MeetingHostId"] == "host-1"
    assert meeting["TenantIds"] == ["team-a"]
    assert meeting["MeetingArn"] == f"arn:aws:chime:us-east-1:123456789012:meeting/{mid}"
    assert meeting["MediaPlacement"]["SignalingUrl"].endswith(f"/control/{mid}")
    assert "PrimaryMeetingId" not in meeting

    ann = chime.create_attendee(MeetingId=mid, ExternalUserId="ann")["Attendee"]
    assert ann["ExternalUserId"] == "ann" and ann["JoinToken"]
    assert ann["Capabilities"] == {"Audio": "SendReceive", "Video": "SendReceive", "Content": "SendReceive"}
    listener = {"Audio": "Receive", "Video": "Receive", "Content": "None"}
    bob = chime.create_attendee(MeetingId=mid, ExternalUserId="bob", Capabilities=listener)["Attendee"]
    assert bob["Capabilities"] == listener
    # A retried CreateAttendee (same ExternalUserId) gets the same attendee.
    assert chime.create_attendee(MeetingId=mid, ExternalUserId="ann")["Attendee"] == ann
    assert chime.get_attendee(MeetingId=mid, AttendeeId=bob["AttendeeId"])["Attendee"] == bob
    assert chime.list_attendees(MeetingId=mid)["Attendees"] == [ann, bob]

    response = chime.delete_attendee(MeetingId=mid, AttendeeId=ann["AttendeeId"])
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert chime.list_attendees(MeetingId=mid)["Attendees"] == [bob]
    with pytest.raises(chime.exceptions.NotFoundException):
        chime.delete_attendee(MeetingId=mid, AttendeeId=ann["AttendeeId"])

    assert chime.delete_meeting(MeetingId=mid)["ResponseMetadata"]["HTTPStatusCode"] == 204
    for call in (chime.get_meeting, chime.list_attendees, chime.delete_meeting):
        with pytest.raises(chime.exceptions.NotFoundException):
            call(MeetingId=mid)
    assert server.api.attendee_ids(mid) == []  # its attendees went with it


def test_the_same_client_request_token_gets_the_same_meeting(chime):
    first = chime.create_meeting(
        ClientRequestToken="token-1", MediaRegion="eu-west-1", ExternalMeetingId="a1"
    )
    again = chime.create_meeting(
        ClientRequestToken="token-1", MediaRegion="eu-west-1", ExternalMeetingId="a1"
    )
    assert again["Meeting"]["MeetingId"] == first["Meeting"]["MeetingId"]
    assert meeting_create(chime)["MeetingId"] != first["Meeting"]["MeetingId"]


def test_not_found_names_the_meeting_as_chime_does(chime):
    missing = str(uuid.uuid4())
    with pytest.raises(chime.exceptions.NotFoundException) as caught:
        chime.get_meeting(MeetingId=missing)
    error = caught.value.response
    assert error["Error"]["Code"] == "NotFoundException"
    assert error["Error"]["Message"] == f"Meeting <{missing}> not found"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert error["Code"] == "NotFound"  # the body's modeled member
    with pytest.raises(chime.exceptions.NotFoundException):
        chime.create_attendee(MeetingId=missing, ExternalUserId="ann")
    with pytest.raises(chime.exceptions.NotFoundException):
        chime.get_attendee(MeetingId=meeting_create(chime)["MeetingId"], AttendeeId=str(uuid.uuid4()))


def test_a_meeting_is_visible_only_in_its_control_region(server, chime):
    mid = meeting_create(chime, MediaRegion="eu-central-1")["MeetingId"]  # media elsewhere
    west = client_of(server, region="us-west-2")
    for call in (west.get_meeting, west.list_attendees, west.delete_meeting):
        with pytest.raises(west.exceptions.NotFoundException):
            call(MeetingId=mid)
    with pytest.raises(west.exceptions.NotFoundException):
        west.create_attendee(MeetingId=mid, ExternalUserId="ann")
    assert chime.get_meeting(MeetingId=mid)["Meeting"]["MediaRegion"] == "eu-central-1"
    assert server.api.meeting_ids(region="us-west-2") == []
    assert server.api.meeting_ids(region="us-east-1") == [mid]


def test_list_attendees_pages_follow_next_token_over_250(chime, server):
    mid = meeting_create(chime)["MeetingId"]
    for n in range(chime_api.ATTENDEES_PER_MEETING):
        server.api.attendee_put(mid, external_user_id=f"user-{n:03}")
    first = chime.list_attendees(MeetingId=mid)
    assert len(first["Attendees"]) == chime_api.LIST_PAGE_DEFAULT and first["NextToken"]
    listed = every_attendee(chime, mid, MaxResults=100)
    assert [a["ExternalUserId"] for a in listed] == [f"user-{n:03}" for n in range(250)]
    # A deletion between pages skips no one still there.
    page = chime.list_attendees(MeetingId=mid, MaxResults=100)
    chime.delete_attendee(MeetingId=mid, AttendeeId=page["Attendees"][0]["AttendeeId"])
    rest = chime.list_attendees(MeetingId=mid, MaxResults=100, NextToken=page["NextToken"])
    assert rest["Attendees"][0]["ExternalUserId"] == "user-100"
    # A full meeting refuses the 251st attendee (250 are left after the deletion: add one back).
    chime.create_attendee(MeetingId=mid, ExternalUserId="late")
    with pytest.raises(chime.exceptions.LimitExceededException):
        chime.create_attendee(MeetingId=mid, ExternalUserId="one-too-many")
    assert len(every_attendee(chime, mid)) == 250


def test_attendee_max_count_lowers_the_limit(chime):
    mid = meeting_create(chime, MeetingFeatures={"Attendee": {"MaxCount": 2}})["MeetingId"]
    chime.create_attendee(MeetingId=mid, ExternalUserId="ann")
    chime.create_attendee(MeetingId=mid, ExternalUserId="bob")
    with pytest.raises(chime.exceptions.LimitExceededException):
        chime.create_attendee(MeetingId=mid, ExternalUserId="cyd")


def test_replicas_name_their_primary(chime, server):
    primary = meeting_create(chime)["MeetingId"]
    replicas = [meeting_create(chime, PrimaryMeetingId=primary)["MeetingId"] for _ in range(4)]
    for replica in replicas:
        assert chime.get_meeting(MeetingId=replica)["Meeting"]["PrimaryMeetingId"] == primary
    assert "PrimaryMeetingId" not in chime.get_meeting(MeetingId=primary)["Meeting"]
    with pytest.raises(chime.exceptions.LimitExceededException):  # the default quota: 4
        meeting_create(chime, PrimaryMeetingId=primary)
    with pytest.raises(chime.exceptions.BadRequestException):  # a replica is no primary
        meeting_create(chime, PrimaryMeetingId=replicas[0])
    with pytest.raises(chime.exceptions.NotFoundException):
        meeting_create(chime, PrimaryMeetingId=str(uuid.uuid4()))
    # On request, up to 40.
    server.api.max_replicas = 40
    more = [meeting_create(chime, PrimaryMeetingId=primary) for _ in range(36)]
    assert {m["PrimaryMeetingId"] for m in more} == {primary}
    with pytest.raises(chime.exceptions.LimitExceededException):
        meeting_create(chime, PrimaryMeetingId=primary)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.get_meeting(MeetingId="not-a-meeting-id"),
        lambda c: c.create_meeting(ClientRequestToken="t1", MediaRegion="mars-1", ExternalMeetingId="x1"),
        lambda c: c.create_meeting(
            ClientRequestToken="t2", MediaRegion="us-east-1", ExternalMeetingId="aws:x"
        ),
        lambda c: c.create_meeting(
            ClientRequestToken="t3", MediaRegion="us-east-1", ExternalMeetingId="x" * 65
        ),
        lambda c: c.create_attendee(
            MeetingId=meeting_create(c)["MeetingId"],
            ExternalUserId="ann",
            Capabilities={"Audio": "SendReceive", "Video": "None", "Content": "SendReceive"},
        ),
        lambda c: c.list_attendees(MeetingId=meeting_create(c)["MeetingId"], MaxResults=101),
        lambda c: c.list_attendees(MeetingId=meeting_create(c)["MeetingId"], NextToken="garbage"),
    ],
    ids=[
        "meeting-id",
        "media-region",
        "reserved-prefix",
        "too-long",
        "content-without-video",
        "page",
        "token",
    ],
)
def test_bad_requests(chime, call):
    with pytest.raises(chime.exceptions.BadRequestException) as caught:
        call(chime)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_an_unsigned_request_is_forbidden_and_unknown_operations_refused(server):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{server.url}/meetings/{uuid.uuid4()}", timeout=5)
    assert caught.value.code == 403
    assert caught.value.headers["x-amzn-ErrorType"].startswith("ForbiddenException:")
    assert json.loads(caught.value.read())["Message"] == "Missing Authentication Token"
    chime = client_of(server)
    with pytest.raises(chime.exceptions.BadRequestException):  # not modelled here
        chime.batch_create_attendee(MeetingId=str(uuid.uuid4()), Attendees=[{"ExternalUserId": "ann"}])


def test_meeting_end_and_put_from_the_control_api(chime, server):
    mid = server.api.meeting_put(
        meeting_id=str(uuid.uuid4()), external_meeting_id="sim", media_region="eu-west-2"
    )
    aid = server.api.attendee_put(mid, external_user_id="ann", attendee_id=str(uuid.uuid4()))
    assert chime.get_meeting(MeetingId=mid)["Meeting"]["ExternalMeetingId"] == "sim"
    assert [a["AttendeeId"] for a in chime.list_attendees(MeetingId=mid)["Attendees"]] == [aid]
    assert server.api.meeting_end(mid) is True
    assert server.api.meeting_end(mid) is False
    with pytest.raises(chime.exceptions.NotFoundException):
        chime.get_meeting(MeetingId=mid)
    assert server.api.calls == {"GetMeeting": 2, "ListAttendees": 1}  # control calls are not calls


def test_injected_faults(chime, server):
    mid = meeting_create(chime)["MeetingId"]
    server.api.fault("ServiceUnavailableException", operation="ListAttendees", times=2)
    assert chime.get_meeting(MeetingId=mid)  # another operation is unaffected
    for _ in range(2):
        with pytest.raises(chime.exceptions.ServiceUnavailableException):
            chime.list_attendees(MeetingId=mid)
    assert chime.list_attendees(MeetingId=mid)["Attendees"] == []
    server.api.fault("ServiceFailureException")
    with pytest.raises(chime.exceptions.ServiceFailureException):
        chime.get_meeting(MeetingId=mid)
    # boto3's standard retries ride over a transient fault.
    server.api.fault("ServiceUnavailableException", operation="GetMeeting")
    retrying = client_of(server, config=Config(retries={"mode": "standard", "total_max_attempts": 3}))
    assert retrying.get_meeting(MeetingId=mid)["Meeting"]["MeetingId"] == mid


def test_over_the_budget_a_call_is_throttled(chime, server):
    mid = meeting_create(chime)["MeetingId"]
    server.api.throttle(per_second=2, burst=2)
    chime.get_meeting(MeetingId=mid)
    chime.get_meeting(MeetingId=mid)
    with pytest.raises(chime.exceptions.ThrottlingException) as caught:
        chime.get_meeting(MeetingId=mid)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert server.api.throttled == {"GetMeeting": 1}
    time.sleep(0.6)  # the bucket refills at 2 per second
    chime.get_meeting(MeetingId=mid)
    server.api.throttle(None)
    for _ in range(20):
        chime.get_meeting(MeetingId=mid)


def test_adaptive_retries_get_through_the_throttle(server):
    server.api.throttle(per_second=20, burst=1)
    chime = client_of(server, config=Config(retries={"mode": "adaptive", "total_max_attempts": 10}))
    meetings = [meeting_create(chime)["MeetingId"] for _ in range(2)]
    for mid in meetings:
        chime.get_meeting(MeetingId=mid)
        chime.list_attendees(MeetingId=mid)
    assert sum(server.api.throttled.values()) > 0
    assert len(server.api.meeting_ids()) == 2  # retried CreateMeeting calls made no duplicates


def test_it_runs_as_a_process_and_prints_its_url():
    process = subprocess.Popen(
        [sys.executable, "-m", "roster.dev.chime_api", "--port", "0", "--calls-per-second", "50"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("Chime SDK Meetings endpoint on http://127.0.0.1:")
        url = line.split()[-1]
        chime = boto3.client(
            "chime-sdk-meetings",
            region_name="ap-south-1",
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=NO_RETRIES,
        )
        mid = meeting_create(chime, MediaRegion="ap-south-1")["MeetingId"]
        assert chime.get_meeting(MeetingId=mid)["Meeting"]["MediaRegion"] == "ap-south-1"
    finally:
        process.terminate()
        assert process.wait(10) == 0


def test_the_supervisor_starts_it(tmp_path):
    with Supervisor(log_dir=tmp_path) as supervisor:
        url = chime_api_start(supervisor)
        chime = boto3.client(
            "chime-sdk-meetings",
            region_name="us-east-1",
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=NO_RETRIES,
        )
        with pytest.raises(chime.exceptions.NotFoundException):
            chime.get_meeting(MeetingId=str(uuid.uuid4()))


def test_server_command_is_the_module():
    assert chime_api.server_command(port=5100)[1:] == [
        "-m",
        "roster.dev.chime_api",
        "--host",
        "127.0.0.1",
        "--port",
        "5100",
    ]


def test_the_api_without_http():
    api = ChimeApi()
    meeting = api.create_meeting(
        "us-east-1", {"ClientRequestToken": "tok", "MediaRegion": "us-east-1", "ExternalMeetingId": "m1"}
    )["Meeting"]
    with pytest.raises(chime_api.ChimeError) as caught:
        api.get_meeting("eu-west-1", meeting["MeetingId"])
    assert (caught.value.code, caught.value.status) == ("NotFoundException", 404)
    with pytest.raises(ValueError):
        api.fault("NoSuchException")
