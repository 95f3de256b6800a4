"""Storage: the append-only event log, the derived roster, quarantined input and queue sources.

Derived rows (Meeting, Attendee, VoiceConnectorStream) are written only by roster.ingest, from the
event log; nothing else edits them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from roster.domain.events import MAX_ID_LENGTH, MAX_TEXT_LENGTH

ID = MAX_ID_LENGTH
TEXT = MAX_TEXT_LENGTH


class Meeting(models.Model):
    class Status(models.TextChoices):
        UNKNOWN = "unknown"
        ACTIVE = "active"
        ENDED = "ended"

    meeting_id = models.CharField(max_length=ID, primary_key=True)
    external_meeting_id = models.CharField(max_length=TEXT, blank=True, default="")
    media_region = models.CharField(max_length=TEXT, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UNKNOWN)
    started_at = models.BigIntegerField(null=True, blank=True, help_text="epoch ms")
    ended_at = models.BigIntegerField(null=True, blank=True, help_text="epoch ms")
    peak_joined = models.PositiveIntegerField(default=0)
    joined_count = models.PositiveIntegerField(default=0)
    dropped_count = models.PositiveIntegerField(default=0)
    video_count = models.PositiveIntegerField(default=0)
    sharing_count = models.PositiveIntegerField(default=0)
    transcription = models.CharField(max_length=16, null=True, blank=True)
    transcription_message = models.TextField(null=True, blank=True)
    pipelines = models.JSONField(default=dict, blank=True)
    seq = models.BigIntegerField(default=0)
    # Fold bookkeeping for peak_joined (roster.domain.peak.PeakState.marks): where the last step
    # counted and the peak are. Null for a meeting stored before it: its next batch sweeps.
    peak_marks = models.JSONField(null=True, blank=True, default=None)
    # A replica's primary meeting (ROSTER.md "Meeting families"), learned from the Chime API.
    primary_meeting_id = models.CharField(max_length=ID, null=True, blank=True)
    # The Chime control region (the region of the meeting's EventBridge envelopes): where
    # reconcile asks; blank when only bare details were seen.
    control_region = models.CharField(max_length=TEXT, blank=True, default="", db_default="")
    # Reconcile's two-miss rule: attendee ids its last check did not find in ListAttendees.
    # The new columns have database defaults: a worker of the previous release (rolling upgrade)
    # creates rows without them.
    reconcile_missed = models.JSONField(default=list, db_default=[], blank=True)
    # When reconcile last completed a check of it (GetMeeting and ListAttendees answered, or
    # NotFound): an `unknown` meeting is checked at most once, the first time this is null.
    reconciled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["status", "-started_at"], name="meeting_list_idx"),
            models.Index(fields=["external_meeting_id"], name="meeting_external_idx"),
            models.Index(fields=["primary_meeting_id"], name="meeting_primary_idx"),
        ]

    def __str__(self) -> str:
        return self.external_meeting_id or self.meeting_id

    @property
    def recording(self) -> bool:
        return any(status in ("in_progress", "resumed") for status in (self.pipelines or {}).values())


class Attendee(models.Model):
    """One roster row (shared/ROSTER.md), with the meeting seq at which it last changed.

    The hottest table of the ingest: nearly every event updates a row. So its only indexes are
    the key and the unique (meeting, attendee) (which serves every read by meeting, the feed's
    catch-up included: a meeting holds a few hundred rows at most), and its pages keep a fifth
    free: an update then changes no indexed column and fits its page, a HOT update that writes
    no index entry (migration 0018, docs/decisions.md)."""

    # No index of its own: attendee_unique_per_meeting leads with meeting_id.
    meeting = models.ForeignKey(Meeting, on_delete=models.CASCADE, related_name="attendees", db_index=False)
    attendee_id = models.CharField(max_length=ID)
    external_user_id = models.CharField(max_length=TEXT, null=True, blank=True)
    presence = models.CharField(max_length=16, null=True, blank=True)
    network_type = models.CharField(max_length=TEXT, null=True, blank=True)
    video = models.BooleanField(default=False)
    screen_share = models.BooleanField(default=False)
    content_share = models.BooleanField(default=False)
    content_video = models.BooleanField(default=False)
    first_joined_at = models.BigIntegerField(null=True, blank=True)
    joined_since = models.BigIntegerField(null=True, blank=True)
    joined_ms = models.BigIntegerField(default=0)
    drop_count = models.PositiveIntegerField(default=0)
    capabilities = models.JSONField(null=True, blank=True)
    seq = models.BigIntegerField(default=0)
    # Fold bookkeeping (roster.domain.fold.AttendeeState), never shown.
    intervals = models.JSONField(default=list, blank=True)
    folded_ts = models.BigIntegerField(default=-1)
    folded_rank = models.SmallIntegerField(default=-1)
    external_user_id_own = models.BooleanField(default=False)
    repaired = models.BooleanField(
        default=False, db_default=False, help_text="a synthesized (reconcile) event is folded in"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["meeting", "attendee_id"], name="attendee_unique_per_meeting")
        ]

    def __str__(self) -> str:
        return self.external_user_id or self.attendee_id


class MeetingUser(models.Model):
    """Every externalUserId a meeting has seen, upper-cased, once: what the meeting list searches.

    Written only by database triggers on roster_attendee (migration 0010), when an attendee row
    is inserted or its externalUserId changes, never by Python: the ingest path does not know it
    exists. Kept apart from Attendee so the search indexes (trigram, and 1- and 2-character
    grams on PostgreSQL) are written once per person, not on each of an attendee's changes.
    """

    # No index of its own: meeting_user_unique leads with meeting_id.
    meeting = models.ForeignKey(Meeting, on_delete=models.CASCADE, related_name="+", db_index=False)
    user_upper = models.CharField(max_length=TEXT)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["meeting", "user_upper"], name="meeting_user_unique")]

    def __str__(self) -> str:
        return self.user_upper


class Event(models.Model):
    """The append-only event log: every occurrence once, identified by its natural key."""

    key = models.CharField(max_length=64, help_text="sha256 of the natural key")
    kind = models.CharField(max_length=16)
    detail_type = models.CharField(max_length=TEXT)
    event_type = models.CharField(max_length=TEXT, blank=True, default="")
    meeting_id = models.CharField(max_length=ID, blank=True, default="")
    attendee_id = models.CharField(max_length=ID, blank=True, default="")
    parent_id = models.CharField(max_length=ID, blank=True, default="", help_text="roster row it folds into")
    timestamp = models.BigIntegerField(help_text="detail.timestamp, epoch ms")
    detail = models.JSONField()
    envelope_id = models.CharField(max_length=TEXT, blank=True, default="")
    account = models.CharField(max_length=TEXT, blank=True, default="")
    region = models.CharField(max_length=TEXT, blank=True, default="")
    queue = models.CharField(max_length=1024, blank=True, default="")
    sqs_message_id = models.CharField(max_length=TEXT, blank=True, default="")
    received_at = models.DateTimeField()
    duplicate_count = models.PositiveIntegerField(default=0)
    # A database default too: a writer that leaves the column out (an older worker during a
    # rolling upgrade) logs a Chime event.
    source = models.CharField(
        max_length=16,
        default="chime",
        db_default="chime",
        help_text="chime, or reconcile: synthesized from the Chime API",
    )

    class Meta:
        # A constraint, not unique=True: the key is a digest, never searched with LIKE, so no
        # second (varchar_pattern_ops) index to maintain on every insert.
        constraints = [models.UniqueConstraint(fields=["key"], name="event_key_unique")]
        indexes = [
            models.Index(fields=["meeting_id", "parent_id", "timestamp"], name="event_fold_idx"),
            models.Index(fields=["event_type"], name="event_type_idx"),
            models.Index(fields=["-received_at"], name="event_received_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type or self.detail_type} @ {self.timestamp}"


class VoiceConnectorStream(models.Model):
    """One Voice Connector streaming transaction; status is the latest by its own time."""

    voice_connector_id = models.CharField(max_length=ID)
    transaction_id = models.CharField(max_length=ID)
    status = models.CharField(max_length=16)
    status_at = models.BigIntegerField(help_text="epoch ms of the status's own time field")
    call_id = models.CharField(max_length=TEXT, blank=True, default="")
    direction = models.CharField(max_length=TEXT, blank=True, default="")
    from_number = models.CharField(max_length=TEXT, blank=True, default="")
    to_number = models.CharField(max_length=TEXT, blank=True, default="")
    stream_arn = models.CharField(max_length=TEXT, blank=True, default="")
    start_time = models.CharField(max_length=TEXT, blank=True, default="")
    end_time = models.CharField(max_length=TEXT, blank=True, default="")
    failure_time = models.CharField(max_length=TEXT, blank=True, default="")
    failure_reason = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["voice_connector_id", "transaction_id"], name="stream_unique_transaction"
            )
        ]
        indexes = [models.Index(fields=["status", "-status_at"], name="stream_status_idx")]

    def __str__(self) -> str:
        return f"{self.voice_connector_id}/{self.transaction_id}"


class Quarantine(models.Model):
    """A message that was not accepted, kept with its reason (bad input is never lost): one row per
    message, however often it is delivered (SQS redelivers one whose delete was lost, SNS retries,
    a file is ingested again). ``source_key`` names the message (roster.ingest.service.
    quarantine_key); each delivery after the first adds to ``deliveries`` and moves
    ``last_received_at``, the rest of the row stays the first delivery's."""

    KEEP_BYTES = 64 * 1024

    body = models.BinaryField(help_text="the body, or its first 64 KiB when larger")
    body_size = models.PositiveIntegerField()
    truncated = models.BooleanField(default=False)
    reason_code = models.CharField(max_length=64)
    reason = models.TextField()
    queue = models.CharField(max_length=1024, blank=True, default="")
    sqs_message_id = models.CharField(max_length=TEXT, blank=True, default="")
    received_at = models.DateTimeField(help_text="the first delivery")
    source_key = models.CharField(
        max_length=80, help_text="the message: its queue and MessageId (SQS), else its source and body digest"
    )
    deliveries = models.PositiveIntegerField(
        default=1, help_text="times the message was received and quarantined"
    )
    last_received_at = models.DateTimeField(help_text="the latest delivery")

    class Outcome(models.TextChoices):
        APPLIED = "applied"
        DUPLICATE = "duplicate"
        REJECTED = "rejected", "still rejected"
        TRUNCATED = "truncated", "not reprocessed: truncated"
        FAILED = "failed"

    reprocessed = models.BooleanField(default=False, help_text="the body went through ingest again")
    reprocessed_at = models.DateTimeField(null=True, blank=True, help_text="last reprocess attempt")
    reprocess_outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True, default="")
    reprocess_detail = models.TextField(blank=True, default="", help_text="the new reason, or why not")

    class Meta:
        # A constraint, not unique=True: a digest, never searched with LIKE (as Event.key).
        constraints = [models.UniqueConstraint(fields=["source_key"], name="quarantine_source_unique")]
        indexes = [
            models.Index(fields=["-received_at"], name="quarantine_received_idx"),
            models.Index(fields=["reason_code"], name="quarantine_reason_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.reason_code} ({self.body_size} bytes)"

    @property
    def body_text(self) -> str:
        return bytes(self.body).decode("utf-8", "backslashreplace")


class QueueSource(models.Model):
    """An SQS queue to drain; seeded from SQS_QUEUE_URLS, managed in admin."""

    url = models.CharField(max_length=1024, unique=True)
    region = models.CharField(max_length=64, blank=True, default="")
    enabled = models.BooleanField(default=True)
    consumers = models.PositiveSmallIntegerField(
        default=1, help_text="concurrent consumers of this queue across all workers"
    )
    last_poll_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    messages_received = models.BigIntegerField(default=0)
    # From GetQueueAttributes (roster.sources.sqs.queue_health_refresh), every QUEUE_HEALTH_SECONDS.
    backlog = models.IntegerField(null=True, blank=True, help_text="ApproximateNumberOfMessages")
    in_flight = models.IntegerField(null=True, blank=True, help_text="ApproximateNumberOfMessagesNotVisible")
    # SQS has no oldest-message attribute (that is the CloudWatch metric): the drain records the
    # age of the oldest message in its last receive (SentTimestamp), 0 when the queue is empty.
    oldest_age_seconds = models.FloatField(
        null=True, blank=True, help_text="age of the oldest message in the drain's last receive"
    )
    health_checked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.url


class AccessRule(models.Model):
    """Lets a user, or every member of a group, see meetings: a glob on externalMeetingId
    (or meetingId), or one exact meetingId. Staff see every meeting without rules."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE)
    meetings = models.CharField(
        max_length=TEXT, help_text="glob on externalMeetingId or meetingId, e.g. 'sales-*', or one meetingId"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False) | models.Q(group__isnull=False),
                name="access_rule_names_someone",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user or self.group}: {self.meetings}"


class FeedToken(models.Model):
    """A bearer token for the feed and REST, scoped by a glob. Only its SHA-256 is stored."""

    name = models.CharField(max_length=TEXT)
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16, help_text="first characters, to recognise a token")
    meetings = models.CharField(
        max_length=TEXT, default="*", help_text="glob on externalMeetingId or meetingId"
    )
    can_mint_host_links = models.BooleanField(
        default=False, help_text="may mint host links (POST /api/host-links) within its own meetings"
    )
    can_manage_hooks = models.BooleanField(
        default=False,
        db_default=False,
        help_text="may create, list, pause, rotate and delete its own outbound hooks (/api/hooks)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class HostLink(models.Model):
    """A signed, expiring URL that opens the dashboard for some meetings without an account.

    Only the SHA-256 of its random secret is stored: the URL is shown once, when it is minted.
    Minted by an operator (admin: ``created_by_user``), an application (REST: ``created_by_token``)
    or the ``host_link`` command (neither).
    """

    meetings = models.CharField(
        max_length=TEXT, help_text="meetingId, externalMeetingId, or a glob on either"
    )
    label = models.CharField(max_length=TEXT, blank=True, default="")
    secret_hash = models.CharField(max_length=64)
    created_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_token = models.ForeignKey(
        FeedToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="host_links"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.label or self.meetings


class Hook(models.Model):
    """An outbound hook (DESIGN.md "Outbound hooks"): where matching roster changes are delivered.

    The secret is stored in clear because it signs every delivery (a hash could not); it is shown
    once, when the hook is made or rotated. During a rotation window both secrets sign.
    """

    name = models.CharField(max_length=TEXT, unique=True)
    target = models.CharField(
        max_length=2048,
        help_text="https:// URL (or loopback http://), sns:<topic ARN> or sqs:<queue URL>",
    )
    events = models.JSONField(default=list, blank=True, help_text="event types; empty = every type")
    meetings = models.CharField(
        max_length=TEXT, default="*", help_text="glob on externalMeetingId or meetingId"
    )
    enabled = models.BooleanField(default=True, help_text="off = paused by an operator: changes queue up")
    secret = models.CharField(max_length=128)
    previous_secret = models.CharField(max_length=128, blank=True, default="")
    previous_secret_until = models.DateTimeField(
        null=True, blank=True, help_text="the old secret signs until then"
    )
    # Circuit breaker: HOOKS_BREAKER_FAILURES consecutive failed attempts break the hook; one probe
    # may go at probe_at (every HOOKS_BREAKER_COOLDOWN_SECONDS); a success mends it.
    consecutive_failures = models.PositiveIntegerField(default=0)
    broken_at = models.DateTimeField(null=True, blank=True)
    broken_reason = models.TextField(blank=True, default="")
    probe_at = models.DateTimeField(null=True, blank=True, help_text="when a broken hook may try again")
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    created_by_token = models.ForeignKey(
        FeedToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="hooks"
    )
    created_by_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name

    @property
    def broken(self) -> bool:
        return self.broken_at is not None


class HookPayload(models.Model):
    """The outbox's row: one part of one meeting change, written in the ingest transaction with the
    hooks it matched (``hooks``), whatever their number. It stands for those hooks' deliveries
    until a worker fans it out (:func:`roster.hooks.outbox.deliveries_fan_out`): one
    :class:`HookDelivery` per hook that still exists, pointing back here, then ``fanned``. The ingest
    writes one row and one index entry a change, not a row and five index entries per hook
    (bench.hooks_bench, overhead).

    ``body`` is the JSON that is sent with ``"id": ""``: a delivery puts its own id in when it is
    sent (:func:`roster.hooks.outbox.body_with_id`). The id (128 bits, time first) is made by the
    writer, so the insert needs no round trip for it.
    """

    id = models.UUIDField(primary_key=True)
    meeting_id = models.CharField(max_length=ID, blank=True, default="", db_default="")
    seq = models.BigIntegerField(default=0, db_default=0)
    part = models.PositiveSmallIntegerField(default=1, db_default=1)
    parts = models.PositiveSmallIntegerField(default=1)
    hooks = models.JSONField(default=list, db_default=[], help_text="ids of the hooks it matched")
    # Database default: the outbox's COPY leaves it out. Rows written before fan-out existed are
    # fanned (migration 0017).
    fanned = models.BooleanField(default=False, db_default=False, help_text="its deliveries are written")
    events = models.JSONField(default=list)
    body = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The fan-out's queue, in the order it takes rows: of rows not fanned out yet only, so
            # it stays as small as the backlog and fanned rows leave it.
            models.Index(
                fields=["meeting_id", "seq", "part"],
                condition=models.Q(fanned=False),
                name="hook_payload_unfanned_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"payload {self.id}"


class HookDelivery(models.Model):
    """One part of one meeting change for one hook: what a worker sends, retries and records. The
    fan-out writes it from its payload (:class:`HookPayload`, written in the ingest transaction).

    ``delivery_id`` is sent as ``X-Roster-Delivery`` and the body's ``id``, the same on every retry.
    Per (hook, meeting) the rows go out strictly in (seq, part) order: only the first pending one
    is ever attempted. ``locked_until``/``lock_token`` are the lease of the worker delivering it: a
    worker that dies leaves a lease that runs out, and another takes the row over.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        DEAD = "dead"

    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="deliveries")
    # Neither an index nor a database constraint: a delivery is written after its payload, and a
    # payload is deleted only when no delivery points at it any more (outbox_prune; a hook's
    # deletion removes its deliveries, not the payloads other hooks share). PostgreSQL checking
    # the constraint at commit cost the ingest 3.5 times its time with 3 hooks when the ingest
    # wrote the deliveries (bench.hooks_bench, overhead).
    payload = models.ForeignKey(
        HookPayload, on_delete=models.DO_NOTHING, related_name="+", db_index=False, db_constraint=False
    )
    meeting_id = models.CharField(max_length=ID)
    seq = models.BigIntegerField()
    part = models.PositiveSmallIntegerField(default=1)
    delivery_id = models.CharField(max_length=64)
    # Defaults in the database too (db_default): the fan-out's COPY leaves these columns out.
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING, db_default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(default=0, db_default=0)
    next_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="", db_default="")
    latency_ms = models.PositiveIntegerField(null=True, blank=True, help_text="of the last attempt")
    retry_until = models.DateTimeField(
        null=True, blank=True, help_text="retries stop then (empty: created_at + HOOKS_RETRY_HOURS)"
    )
    locked_until = models.DateTimeField(null=True, blank=True)
    lock_token = models.CharField(max_length=32, blank=True, default="", db_default="")
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "hook deliveries"
        constraints = [
            # Also the "is an earlier one still pending" index of the claim: of pending rows only,
            # so that question costs one probe, not a walk through the meeting's delivered past.
            models.UniqueConstraint(
                fields=["hook", "meeting_id", "seq", "part"],
                condition=models.Q(status="pending"),
                name="hook_delivery_pending_order",
            ),
            models.UniqueConstraint(fields=["delivery_id"], name="hook_delivery_id_unique"),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="hook_delivery_due_idx",
            ),
            # What admin looks for among millions of delivered rows: the dead ones (to redeliver).
            # Partial, so the outbox's inserts (pending) never touch it.
            models.Index(fields=["-id"], condition=models.Q(status="dead"), name="hook_delivery_dead_idx"),
        ]

    def __str__(self) -> str:
        part = f" part {self.part}" if self.part > 1 else ""
        return f"{self.hook} {self.meeting_id}#{self.seq}{part}"
