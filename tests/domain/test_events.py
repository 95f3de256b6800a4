"""roster.domain.events.event_parse: accepted shapes, natural keys (ROSTER.md "Event identity"),
rejections."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roster.dev.chime import (
    ACCOUNT,
    BASE_TS,
    MEETING_ID,
    REGION,
    accepted,
    as_json,
    detail,
    envelope,
    sns,
    vc_detail,
)
from roster.domain.events import (
    KIND_MEETING,
    KIND_PIPELINE,
    KIND_UNKNOWN,
    KIND_VOICE_CONNECTOR,
    MEETING_DETAIL_TYPE,
    PIPELINE_DETAIL_TYPE,
    VOICE_CONNECTOR_DETAIL_TYPE,
    ChimeEvent,
    Rejection,
    event_parse,
    json_read,
)

pytestmark = pytest.mark.once  # no database: the PostgreSQL run is enough (tests/conftest.py)

ATTENDEE = "11112222-3333-4444-5555-666677778888"
OTHER_ACCOUNT = "999988887777"


def rejected(body: str | bytes, **kwargs) -> Rejection:
    outcome = event_parse(body, **kwargs)
    assert isinstance(outcome, Rejection), f"expected a rejection, got {outcome!r}"
    assert outcome.message, "a rejection must say why"
    assert str(outcome) == f"{outcome.code}: {outcome.message}"
    return outcome


def joined_detail(**extra) -> dict:
    """An AttendeeJoined detail as Chime documents it; ``extra`` adds or replaces fields."""
    fields = {
        "externalUserId": "alice@example.com",
        "externalMeetingId": "standup",
        "mediaRegion": "us-east-1",
        "networkType": "Voip",
        **extra,
    }
    return detail("AttendeeJoined", MEETING_ID, ATTENDEE, ts=BASE_TS, **fields)


# The same occurrence, in every shape a queue can receive it.
SHAPES = {
    "eventbridge": lambda d: as_json(envelope(d)),
    "eventbridge_other_id": lambda d: as_json(
        envelope(d, envelope_id="ffffffff-0000-0000-0000-000000000000")
    ),
    "sns_envelope": lambda d: as_json(sns(envelope(d))),
    "sns_envelope_other_message_id": lambda d: as_json(sns(envelope(d), message_id="another-message-id")),
    "sns_bare_detail": lambda d: as_json(sns(d)),
    "bare_detail": lambda d: as_json(d),
}


# --- accepted shapes ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_parses_to_the_same_meeting_event(shape):
    d = joined_detail()
    event = accepted(SHAPES[shape](d))

    assert isinstance(event, ChimeEvent)
    assert event.kind == KIND_MEETING
    assert event.detail_type == MEETING_DETAIL_TYPE
    assert event.event_type == "chime:AttendeeJoined"
    assert event.meeting_id == MEETING_ID
    assert event.attendee_id == ATTENDEE
    assert event.parent_id == ATTENDEE
    assert event.timestamp == BASE_TS
    assert event.detail == d


def test_envelope_fields_are_kept_for_tracing():
    event = accepted(as_json(envelope(joined_detail(), envelope_id="env-1", account=ACCOUNT, region=REGION)))
    assert (event.envelope_id, event.account, event.region) == ("env-1", ACCOUNT, REGION)

    through_sns = accepted(as_json(sns(envelope(joined_detail(), envelope_id="env-2"))))
    assert through_sns.envelope_id == "env-2"

    bare = accepted(as_json(joined_detail()))
    assert (bare.envelope_id, bare.account, bare.region) == ("", "", "")


def test_natural_key_is_the_same_through_every_shape():
    d = joined_detail()
    keys = {shape: accepted(make(d)).key for shape, make in SHAPES.items()}
    assert len(set(keys.values())) == 1, keys


@pytest.mark.parametrize(
    "change",
    [
        {"meetingId": "another-meeting"},
        {"attendeeId": "another-attendee"},
        {"eventType": "chime:AttendeeLeft"},
        {"timestamp": BASE_TS + 1},
    ],
    ids=["meetingId", "attendeeId", "eventType", "timestamp"],
)
def test_each_natural_key_part_names_a_different_occurrence(change):
    original = accepted(as_json(joined_detail()))
    other = accepted(as_json({**joined_detail(), **change}))
    assert other.key != original.key


def test_natural_key_ignores_fields_outside_the_key():
    """(meetingId, attendeeId, eventType, timestamp) names one occurrence; the rest is not identity."""
    one = accepted(as_json(joined_detail()))
    two = accepted(as_json({**joined_detail(), "networkType": "PSTN", "version": "1"}))
    assert one.key == two.key


def test_missing_and_null_attendee_id_are_the_same_empty_part_of_the_key():
    started = detail("MeetingStarted", MEETING_ID, ts=BASE_TS)
    with_null = {**started, "attendeeId": None}
    one, two = accepted(as_json(started)), accepted(as_json(with_null))
    assert one.attendee_id == two.attendee_id == ""
    assert one.key == two.key
    assert one.parent_id == ""


def test_content_attendee_parent_id_is_the_id_without_suffix():
    event = accepted(as_json(detail("AttendeeContentJoined", MEETING_ID, f"{ATTENDEE}#content", ts=BASE_TS)))
    assert event.attendee_id == f"{ATTENDEE}#content"
    assert event.parent_id == ATTENDEE


def test_unknown_chime_event_type_in_a_meeting_detail_is_accepted_as_a_meeting_event():
    event = accepted(as_json(envelope(detail("AttendeeSomethingNew", MEETING_ID, ATTENDEE, ts=BASE_TS))))
    assert event.kind == KIND_MEETING
    assert event.event_type == "chime:AttendeeSomethingNew"
    assert event.attendee_id == ATTENDEE


def test_str_and_bytes_bodies_parse_alike():
    d = joined_detail(externalUserId="zoë@example.com")
    text = json.dumps(d, ensure_ascii=False)
    from_str = accepted(text)
    from_bytes = accepted(text.encode("utf-8"))
    assert from_str == from_bytes
    assert from_bytes.detail["externalUserId"] == "zoë@example.com"


def test_escaped_surrogate_pair_is_an_ordinary_character():
    body = as_json(joined_detail()).replace('"alice@example.com"', '"alice\\ud83d\\ude00"')
    event = accepted(body)
    assert event.detail["externalUserId"] == "alice\U0001f600"


def test_chime_documentation_example_once_repaired_by_hand_parses():
    # The AWS documentation examples miss the comma after "resources": [] (see the not_json test).
    body = CHIME_DOCS_EXAMPLE.replace('"resources": []', '"resources": [],')
    event = accepted(body)
    assert event.event_type == "chime:AttendeeJoined"
    assert event.timestamp == 12344566754


# --- pipelines -----------------------------------------------------------------------------------


def pipeline_detail(pipeline_id: str, event_type: str = "MediaPipelineInProgress", ts: int = BASE_TS) -> dict:
    return detail(event_type, MEETING_ID, ts=ts, mediaPipelineId=pipeline_id, externalMeetingId="standup")


def test_pipeline_event_is_kind_pipeline_with_no_attendee():
    event = accepted(as_json(envelope(pipeline_detail("pipe-1"))))
    assert event.kind == KIND_PIPELINE
    assert event.detail_type == PIPELINE_DETAIL_TYPE
    assert event.event_type == "chime:MediaPipelineInProgress"
    assert event.meeting_id == MEETING_ID
    assert event.attendee_id == ""
    assert event.parent_id == ""
    assert event.timestamp == BASE_TS


def test_two_pipelines_with_the_same_type_and_ms_are_two_occurrences():
    one = accepted(as_json(envelope(pipeline_detail("pipe-1"))))
    two = accepted(as_json(envelope(pipeline_detail("pipe-2"))))
    assert one.key != two.key


def test_pipeline_key_is_the_same_through_every_shape():
    d = pipeline_detail("pipe-1")
    events = [accepted(make(d)) for make in SHAPES.values()]
    assert {event.kind for event in events} == {KIND_PIPELINE}
    assert len({event.key for event in events}) == 1


def test_pipeline_key_differs_by_type_and_time():
    base = accepted(as_json(pipeline_detail("pipe-1")))
    assert accepted(as_json(pipeline_detail("pipe-1", "MediaPipelineDeleted"))).key != base.key
    assert accepted(as_json(pipeline_detail("pipe-1", ts=BASE_TS + 1))).key != base.key


# --- Voice Connector streaming --------------------------------------------------------------------


def test_voice_connector_event_fields():
    event = accepted(as_json(envelope(vc_detail("STARTED", at="2022-08-30T19:06:18.112Z"))))
    assert event.kind == KIND_VOICE_CONNECTOR
    assert event.detail_type == VOICE_CONNECTOR_DETAIL_TYPE
    assert event.event_type == "STARTED"
    assert event.meeting_id == ""
    assert event.attendee_id == ""
    assert event.timestamp == 1661886378112  # epoch ms of startTime


def test_voice_connector_two_deliveries_have_the_same_key():
    d = vc_detail("UPDATED", at="2022-08-30T19:06:20.000Z")
    keys = {
        accepted(as_json(envelope(d))).key,
        accepted(as_json(envelope(d, envelope_id="another"))).key,
        accepted(as_json(sns(envelope(d)))).key,
        accepted(as_json(d)).key,
    }
    assert len(keys) == 1


def test_voice_connector_key_uses_the_status_own_time_field():
    """UPDATED is keyed by updateTime: a different startTime on the same update is the same occurrence."""
    one = vc_detail("UPDATED", at="2022-08-30T19:06:20.000Z", startTime="2022-08-30T19:06:18.112Z")
    two = {**one, "startTime": "2022-08-30T19:06:18.999Z"}
    assert accepted(as_json(one)).key == accepted(as_json(two)).key
    later = vc_detail("UPDATED", at="2022-08-30T19:06:21.000Z", startTime="2022-08-30T19:06:18.112Z")
    assert accepted(as_json(later)).key != accepted(as_json(one)).key


def test_voice_connector_different_statuses_and_transactions_differ():
    at = "2022-08-30T19:06:18.112Z"
    keys = {
        accepted(as_json(vc_detail("STARTED", at=at))).key,
        accepted(as_json(vc_detail("UPDATED", at=at))).key,
        accepted(as_json(vc_detail("ENDED", at=at))).key,
        accepted(as_json(vc_detail("FAILED", at=at))).key,
        accepted(as_json(vc_detail("STARTED", at=at, transaction_id="another-tx"))).key,
        accepted(as_json(vc_detail("STARTED", at=at, voice_connector_id="another-vc"))).key,
    }
    assert len(keys) == 6


@pytest.mark.parametrize(
    ("status", "field"),
    [("STARTED", "startTime"), ("UPDATED", "updateTime"), ("ENDED", "endTime"), ("FAILED", "failureTime")],
)
def test_voice_connector_timestamp_comes_from_the_status_time_field(status, field):
    d = vc_detail(status, at="2022-08-30T19:07:00.500Z")
    assert d[field] == "2022-08-30T19:07:00.500Z"
    assert accepted(as_json(d)).timestamp == 1661886420500


# --- unknown detail-types ------------------------------------------------------------------------


def test_unknown_chime_detail_type_is_kept_as_kind_unknown():
    d = {"eventType": "chime:SomethingNew", "meetingId": MEETING_ID, "timestamp": BASE_TS, "extra": [1, 2]}
    event = accepted(as_json(envelope(d, detail_type="Chime Something New")))
    assert event.kind == KIND_UNKNOWN
    assert event.detail_type == "Chime Something New"
    assert event.event_type == "chime:SomethingNew"
    assert event.meeting_id == MEETING_ID
    assert event.timestamp == BASE_TS
    assert event.detail == d


def test_unknown_detail_type_same_detail_twice_has_the_same_key():
    d = {"eventType": "chime:SomethingNew", "meetingId": MEETING_ID, "timestamp": BASE_TS, "b": 1, "a": 2}
    reordered = {
        "a": 2,
        "b": 1,
        "timestamp": BASE_TS,
        "meetingId": MEETING_ID,
        "eventType": "chime:SomethingNew",
    }
    one = accepted(as_json(envelope(d, detail_type="Chime Something New", envelope_id="e-1")))
    two = accepted(as_json(sns(envelope(reordered, detail_type="Chime Something New", envelope_id="e-2"))))
    assert one.key == two.key
    changed = accepted(as_json(envelope({**d, "b": 3}, detail_type="Chime Something New")))
    assert changed.key != one.key
    other_type = accepted(as_json(envelope(d, detail_type="Chime Something Else")))
    assert other_type.key != one.key


def test_unknown_detail_type_without_meeting_fields_is_still_kept():
    event = accepted(as_json(envelope({"whatever": True}, detail_type="Chime Something New")))
    assert (event.kind, event.meeting_id, event.timestamp, event.event_type) == (KIND_UNKNOWN, "", 0, "")


# --- accounts ------------------------------------------------------------------------------------


def test_account_in_the_allowed_set_is_accepted():
    allowed = frozenset({ACCOUNT, OTHER_ACCOUNT})
    event = accepted(as_json(envelope(joined_detail(), account=ACCOUNT)), allowed_accounts=allowed)
    assert event.account == ACCOUNT


def test_any_account_is_accepted_when_the_allowed_set_is_empty():
    event = accepted(as_json(envelope(joined_detail(), account=OTHER_ACCOUNT)))
    assert event.account == OTHER_ACCOUNT


def test_bare_detail_names_no_account_and_is_accepted_with_an_allowed_set():
    event = accepted(as_json(joined_detail()), allowed_accounts=frozenset({ACCOUNT}))
    assert event.account == ""
    event = accepted(as_json(sns(joined_detail())), allowed_accounts=frozenset({ACCOUNT}))
    assert event.account == ""


@pytest.mark.parametrize("wrap", [lambda e: e, sns], ids=["eventbridge", "sns"])
def test_account_not_allowed(wrap):
    body = as_json(wrap(envelope(joined_detail(), account=OTHER_ACCOUNT)))
    rejection = rejected(body, allowed_accounts=frozenset({ACCOUNT}))
    assert rejection.code == "account_not_allowed"
    assert OTHER_ACCOUNT in rejection.message


def test_envelope_without_account_is_not_allowed_when_a_set_is_configured():
    doc = envelope(joined_detail())
    del doc["account"]
    rejection = rejected(as_json(doc), allowed_accounts=frozenset({ACCOUNT}))
    assert rejection.code == "account_not_allowed"


# --- rejections ----------------------------------------------------------------------------------

# The AWS documentation prints its examples without the comma after "resources": [].
CHIME_DOCS_EXAMPLE = """{
    "version": "0",
    "source": "aws.chime",
    "account": "111122223333",
    "region": "us-east-1",
    "detail-type": "Chime Meeting State Change",
    "time": "yyyy-mm-ddThh:mm:ssZ",
    "resources": []
    "detail": {
        "version": "0",
        "eventType": "chime:AttendeeJoined",
        "timestamp": 12344566754,
        "meetingId": "87654321-4321-4321-1234-111122223333",
        "attendeeId": "87654321-4321-4321-1234-111122223333",
        "externalUserId": "87654321-4321-4321-1234-111122223333",
        "externalMeetingId": "87654321-4321-4321-1234-111122223333",
        "mediaRegion": "us-east-1",
        "networkType": "Voip"
    }
}"""


def test_too_large_body_is_rejected_before_parsing():
    body = as_json(joined_detail())
    size = len(body.encode("utf-8"))
    rejection = rejected(body, max_bytes=size - 1)
    assert rejection.code == "too_large"
    assert str(size) in rejection.message
    assert str(size - 1) in rejection.message
    assert accepted(body, max_bytes=size).key  # exactly the limit is fine


def test_too_large_counts_bytes_not_characters():
    body = json.dumps(joined_detail(externalUserId="é" * 100), ensure_ascii=False)
    assert len(body) < len(body.encode("utf-8"))
    rejection = rejected(body, max_bytes=len(body))
    assert rejection.code == "too_large"
    rejection = rejected(body.encode("utf-8"), max_bytes=len(body))
    assert rejection.code == "too_large"


def test_default_limit_is_256_kib():
    padding = "x" * 262144
    rejection = rejected(as_json(joined_detail(padding=padding)))
    assert rejection.code == "too_large"
    assert "262144" in rejection.message


def test_not_utf8():
    body = as_json(joined_detail()).encode("utf-8").replace(b"alice", b"al\xffce")
    rejection = rejected(body)
    assert rejection.code == "not_utf8"
    assert "UTF-8" in rejection.message


def test_chime_documentation_example_with_missing_comma_is_rejected_not_repaired():
    rejection = rejected(CHIME_DOCS_EXAMPLE)
    assert rejection.code == "not_json"
    assert "not valid JSON" in rejection.message
    assert "line 9" in rejection.message  # points at the place: "detail" after "resources": []


@pytest.mark.parametrize(
    "body",
    ["", "   ", "{", '{"eventType": "chime:AttendeeJoined",}', "{'single': 'quotes'}", "not json at all"],
)
def test_invalid_json(body):
    rejection = rejected(body)
    assert rejection.code == "not_json"
    assert "body is not valid JSON" in rejection.message


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_numbers_json_does_not_have_are_not_json(constant):
    """Python's json reads them; the log's JSON could not hold them (PostgreSQL refuses them, and
    a writer that cannot say NaN would write something else)."""
    body = as_json(joined_detail(x="__x__")).replace('"__x__"', constant)
    rejection = rejected(body)
    assert rejection.code == "not_json"
    assert constant in rejection.message


@pytest.mark.parametrize("number", ["1e400", "-2.5E+309"])
def test_a_number_beyond_a_floats_range_is_a_bad_field(number):
    body = as_json(joined_detail(x="__x__")).replace('"__x__"', number)
    rejection = rejected(body)
    assert rejection.code == "bad_field"
    assert number in rejection.message


def _same(a: object, b: object) -> bool:
    """Equal and of the same types all the way down (1 is not 1.0, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    value=_JSON_VALUES,
    ascii_only=st.booleans(),
    separators=st.sampled_from([(", ", ": "), (",", ":"), (",\t", ":\r"), (" ,", " :")]),
    indent=st.sampled_from([None, 0, 2, "\t"]),
)
def test_the_fast_reading_of_a_body_is_jsons_reading(value, ascii_only, separators, indent):
    """Bodies are read by orjson where it reads them as json would, else by json: the values
    (and their types) are json's either way, big integers included, whatever whitespace comes
    before them."""
    text = json.dumps(value, ensure_ascii=ascii_only, separators=separators, indent=indent)
    assert _same(json_read(text), json.loads(text))


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        "[1e-400, -0.0, -0]",
        '{"n": 18446744073709551615, "m": -9223372036854775809}',
        '["\\u00e9"]',
        "18446744073709551616",
        "-18446744073709551616",
        "[\n18446744073709551616]",
        '{"a":[1,18446744073709551616]}',
        "[1e-1234567890123456789, 1E+0000000000000000000001, 1.00000000000000000000001]",
        '["a 18446744073709551616 b", "x-18446744073709551616"]',
    ],
)
def test_the_fast_reading_agrees_on_edge_cases(text):
    assert _same(json_read(text), json.loads(text))


def test_digits_inside_a_string_keep_the_fast_reading(monkeypatch):
    """A hex key holds a run of 19 digits now and then: only a number that long needs json's
    reading, so such a string never sends a whole batch answer to it."""
    monkeypatch.setattr("roster.domain.events.json.loads", lambda *_a, **_k: pytest.fail("read by json"))
    text = '["3ecdcc3789d4a1234567890123456789012cc8", {"k": "7c1234567890123456789012e"}]'
    assert json_read(text) == json.JSONDecoder().decode(text)


def test_ordinary_floats_in_a_detail_are_kept_as_they_read():
    body = as_json(joined_detail(x="__x__")).replace(
        '"__x__"', "[1.5e-7, 0.1, -0.0, 12345678901234567890123]"
    )
    event = event_parse(body)
    assert event.detail["x"] == [1.5e-7, 0.1, -0.0, 12345678901234567890123]


@pytest.mark.parametrize(
    ("body", "got"),
    [
        ("[]", "list"),
        ("[{}]", "list"),
        ("42", "int"),
        ("1.5", "float"),
        ('"text"', "str"),
        ("null", "NoneType"),
    ],
)
def test_json_that_is_not_an_object(body, got):
    rejection = rejected(body)
    assert rejection.code == "not_object"
    assert got in rejection.message


@pytest.mark.parametrize(
    "message", [42, None, {"detail": {}}, ["x"]], ids=["number", "null", "object", "list"]
)
def test_sns_message_that_is_not_a_string(message):
    doc = sns(envelope(joined_detail()))
    doc["Message"] = message
    rejection = rejected(as_json(doc))
    assert rejection.code == "bad_sns"
    assert "Message" in rejection.message


def test_sns_message_that_is_not_json():
    rejection = rejected(as_json(sns("Hello from SNS")))
    assert rejection.code == "not_json"
    assert "SNS Message" in rejection.message


def test_sns_message_that_is_json_but_not_an_object():
    rejection = rejected(as_json(sns("[1, 2]")))
    assert rejection.code == "not_object"
    assert "SNS Message" in rejection.message


@pytest.mark.parametrize("message_type", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_sns_message_that_is_not_a_notification(message_type):
    doc = sns("You have chosen to subscribe to the topic", message_type=message_type)
    doc["SubscribeURL"] = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    rejection = rejected(as_json(doc))
    assert rejection.code == "sns_not_notification"
    assert message_type in rejection.message


def test_sns_notification_without_message():
    doc = sns(envelope(joined_detail()))
    del doc["Message"]
    rejection = rejected(as_json(doc))
    assert rejection.code == "sns_not_notification"


@pytest.mark.parametrize("source", ["aws.ec2", "chime", "", None])
def test_wrong_source(source):
    doc = envelope(joined_detail())
    doc["source"] = source
    rejection = rejected(as_json(doc))
    assert rejection.code == "wrong_source"
    assert repr(source) in rejection.message
    assert "aws.chime" in rejection.message


def test_envelope_without_source_is_wrong_source():
    doc = envelope(joined_detail())
    del doc["source"]
    assert rejected(as_json(doc)).code == "wrong_source"


def test_wrong_source_inside_sns():
    rejection = rejected(as_json(sns(envelope(joined_detail(), source="aws.s3"))))
    assert rejection.code == "wrong_source"


@pytest.mark.parametrize("field", ["meetingId", "eventType", "timestamp"])
@pytest.mark.parametrize("how", ["absent", "null"])
def test_missing_required_meeting_field(field, how):
    d = joined_detail()
    if how == "absent":
        del d[field]
    else:
        d[field] = None
    for body in (as_json(envelope(d)), as_json(d)):
        rejection = rejected(body)
        assert rejection.code == "missing_field"
        assert f"'{field}'" in rejection.message


def test_envelope_without_detail_or_detail_type():
    doc = envelope(joined_detail())
    del doc["detail"]
    rejection = rejected(as_json(doc))
    assert (rejection.code, "'detail'" in rejection.message) == ("missing_field", True)

    doc = envelope(joined_detail())
    doc["detail"] = "not an object"
    assert rejected(as_json(doc)).code == "missing_field"

    doc = envelope(joined_detail())
    del doc["detail-type"]
    rejection = rejected(as_json(doc))
    assert (rejection.code, "'detail-type'" in rejection.message) == ("missing_field", True)


@pytest.mark.parametrize(
    ("value", "got"),
    [("1700000000000", "str"), (1.7e12, "float"), (1700000000000.0, "float"), (True, "bool"), ([1], "list")],
    ids=["string", "float", "integral_float", "bool", "list"],
)
def test_timestamp_of_the_wrong_type(value, got):
    rejection = rejected(as_json(joined_detail(timestamp=value)))
    assert rejection.code == "bad_field"
    assert "'timestamp'" in rejection.message
    assert got in rejection.message


@pytest.mark.parametrize("value", [-1, 2**63])
def test_timestamp_out_of_range(value):
    rejection = rejected(as_json(joined_detail(timestamp=value)))
    assert rejection.code == "bad_field"
    assert "out of range" in rejection.message


@pytest.mark.parametrize("value", [5, True, {"id": "x"}, ["x"]])
def test_attendee_id_that_is_not_a_string(value):
    rejection = rejected(as_json(joined_detail(attendeeId=value)))
    assert rejection.code == "bad_field"
    assert "'attendeeId'" in rejection.message


@pytest.mark.parametrize("field", ["meetingId", "eventType"])
def test_required_string_of_the_wrong_type_or_empty(field):
    rejection = rejected(as_json({**joined_detail(), field: 7}))
    assert rejection.code == "bad_field"
    assert f"'{field}'" in rejection.message
    rejection = rejected(as_json({**joined_detail(), field: ""}))
    assert rejection.code == "bad_field"
    assert "empty" in rejection.message


@pytest.mark.parametrize(("field", "limit"), [("meetingId", 128), ("attendeeId", 128), ("eventType", 256)])
def test_overlong_ids(field, limit):
    at_limit = {**joined_detail(), field: "x" * limit}
    assert accepted(as_json(at_limit))
    rejection = rejected(as_json({**joined_detail(), field: "x" * (limit + 1)}))
    assert rejection.code == "bad_field"
    assert f"'{field}'" in rejection.message
    assert str(limit) in rejection.message


def test_overlong_optional_text_field():
    rejection = rejected(as_json(joined_detail(externalUserId="u" * 257)))
    assert rejection.code == "bad_field"
    assert "'externalUserId'" in rejection.message


def test_optional_text_field_of_the_wrong_type():
    rejection = rejected(as_json(joined_detail(networkType=3)))
    assert rejection.code == "bad_field"
    assert "'networkType'" in rejection.message


def body_with(raw_json_string: str, *, field: str = "externalUserId") -> str:
    """A joined-event body whose ``field`` is the given JSON string literal (escapes kept as written)."""
    body = as_json(joined_detail())
    value = json.dumps(joined_detail()[field])
    assert body.count(value) == 1
    return body.replace(value, raw_json_string)


@pytest.mark.parametrize("field", ["meetingId", "attendeeId", "externalUserId", "eventType"])
def test_escaped_nul_in_a_string_is_rejected(field):
    rejection = rejected(body_with('"a\\u0000b"', field=field))
    assert rejection.code == "bad_field"
    assert "NUL" in rejection.message


def test_escaped_nul_anywhere_in_the_document_is_rejected():
    nested = as_json(envelope(joined_detail(attendeeCapabilities={"audio": "Send\u0000"})))
    assert "\\u0000" in nested
    assert rejected(nested).code == "bad_field"
    in_a_key = as_json(envelope(joined_detail(**{"odd\u0000key": 1})))
    assert rejected(in_a_key).code == "bad_field"
    in_unknown = as_json(envelope({"note": "a\u0000"}, detail_type="Chime Something New"))
    assert rejected(in_unknown).code == "bad_field"
    in_sns_message = as_json(sns(envelope(joined_detail(externalUserId="nul\u0000"))))
    assert rejected(in_sns_message).code == "bad_field"


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "x\\udc80y", "\\ude00\\ud83d"])
def test_escaped_lone_surrogate_is_rejected(escape):
    rejection = rejected(body_with(f'"{escape}"'))
    assert rejection.code == "bad_field"
    assert "surrogate" in rejection.message


def test_escaped_lone_surrogate_in_an_unknown_detail_type_is_rejected():
    body = as_json(envelope({"note": "x"}, detail_type="Chime Something New")).replace('"x"', '"\\ud800"')
    assert rejected(body).code == "bad_field"


@pytest.mark.parametrize(
    "body",
    [
        # A str body can carry a lone surrogate as a character rather than as a \\u escape.
        '{"eventType": "chime:AttendeeJoined", "meetingId": "m\ud800", "timestamp": 1}',
        '{"eventType": "chime:AttendeeJoined", "meetingId": "m", "timestamp": 1, "externalUserId": "\udc80"}',
        '{"source": "aws.chime", "detail-type": "Chime Something New", "detail": {"note": "\ud800"}}',
    ],
    ids=["in_key_field", "in_other_field", "in_unknown_detail"],
)
def test_lone_surrogate_character_in_a_str_body_is_rejected(body):
    """event_parse "never raises for bad input": a str body holding a lone surrogate is bad input.

    Such a string cannot be encoded to UTF-8, so it could never be stored; it must be a Rejection,
    neither an exception nor an accepted event.
    """
    rejection = rejected(body)
    assert rejection.code == "not_utf8"
    assert "UTF-8" in rejection.message


def test_escaped_backslash_before_u0000_is_not_a_nul():
    event = accepted(body_with('"C:\\\\u0000dir"'))
    assert event.detail["externalUserId"] == "C:\\u0000dir"


@pytest.mark.parametrize(
    ("change", "code", "fragment"),
    [
        ({"streamingStatus": "PAUSED"}, "bad_field", "PAUSED"),
        ({"streamingStatus": None}, "missing_field", "'streamingStatus'"),
        ({"startTime": "yesterday"}, "bad_field", "startTime"),
        ({"startTime": "2022-08-30T19:06:18"}, "bad_field", "startTime"),  # no zone: not a point in time
        ({"startTime": None}, "missing_field", "'startTime'"),
        ({"transactionId": None}, "missing_field", "'transactionId'"),
        ({"voiceConnectorId": 12}, "bad_field", "'voiceConnectorId'"),
    ],
    ids=["unknown_status", "no_status", "bad_time", "naive_time", "no_time", "no_transaction", "bad_vc_id"],
)
def test_voice_connector_rejections(change, code, fragment):
    d = {**vc_detail("STARTED"), **change}
    for body in (as_json(envelope(d, detail_type=VOICE_CONNECTOR_DETAIL_TYPE)), as_json(d)):
        rejection = rejected(body)
        assert rejection.code == code
        assert fragment in rejection.message


@pytest.mark.parametrize(
    "doc",
    [{}, {"hello": "world"}, {"Records": [{"eventSource": "aws:s3"}]}, {"Type": "Notification"}],
    ids=["empty", "unrelated", "s3_records", "notification_without_topic_or_message"],
)
def test_unrecognised_shape(doc):
    rejection = rejected(as_json(doc))
    assert rejection.code == "unrecognised"
    assert "EventBridge" in rejection.message


def test_deeply_nested_json_is_rejected_not_raised():
    body = "[" * 50_000 + "]" * 50_000
    assert rejected(body).code == "not_json"
