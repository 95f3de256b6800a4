"""Admin for operators. Derived rows are read-only: only roster.ingest writes them.

Meeting, Attendee, Event and VoiceConnectorStream can be looked at, never added, changed or
deleted here (a hand edit would disagree with the event log, and the next fold would undo it).
Actions only call services: quarantine reprocessing, queue health, feed tokens, host links. Epoch
ms are shown as dates (the number in a tooltip), durations as H:MM:SS, names next to ids, and
event types in one form (``AttendeeJoined`` and ``chime:AttendeeJoined`` are one type).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.text import capfirst

from roster.domain.fold import PREFIX, type_name
from roster.models import (
    AccessRule,
    Attendee,
    Event,
    FeedToken,
    HostLink,
    Meeting,
    Quarantine,
    QueueSource,
    VoiceConnectorStream,
)
from roster.ops.quarantine import quarantine_body_sections, quarantine_reprocess
from roster.read.access import feed_token_create, feed_token_revoke
from roster.read.host_links import (
    DEFAULT_HOURS,
    HostLinkRefused,
    host_link_check,
    host_link_create,
    host_link_revoke,
)
from roster.read.serializers import ATTENDEE_FIELDS, MEETING_FIELDS
from roster.sources.sqs import queue_health_refresh, queue_source_update


class NoAddOrChange:
    """Rows only the services write: never added or changed by hand."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyPermissions(NoAddOrChange):
    """Visible, never added, changed or deleted by hand (for model admins and inlines alike)."""

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnlyPermissions, admin.ModelAdmin):
    """Derived state and the event log."""


def when(ms: int | None) -> str:
    """Epoch ms as a date in the site's time zone, to the millisecond (fold order is by ms)."""
    if ms is None:
        return "-"
    moment = timezone.localtime(datetime.fromtimestamp(ms / 1000, tz=UTC))
    return format_html(
        '<time datetime="{}" title="{} ms">{}</time>',
        moment.isoformat(),
        ms,
        moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d} " + moment.strftime("%Z"),
    )


def as_date(field: str, label: str) -> Callable[[object, object], str]:
    """An admin column (or read-only field) showing an epoch-ms field as a date."""

    @admin.display(description=label, ordering=field)
    def column(self, obj) -> str:
        return when(getattr(obj, field))

    return column


# The public fields stored as epoch ms (or ms spans), and the admin attribute showing each readably.
SHOWN_AS = {
    "started_at": "started",
    "ended_at": "ended",
    "first_joined_at": "first_joined",
    "joined_since": "in_since",
    "joined_ms": "time_in_meeting",
    "timestamp": "happened",
}


def readable(fields: Iterable[str]) -> tuple[str, ...]:
    return tuple(SHOWN_AS.get(name, name) for name in fields)


def named(name: str | None, identifier: str) -> str:
    """A name next to its id (the id alone when there is no name)."""
    if not name or name == identifier:
        return identifier or "-"
    return format_html('{} <span class="quiet">{}</span>', name, identifier)


@admin.display(description="queue", ordering="queue")
def queue_name(obj: Event | Quarantine) -> str:
    """A queue URL's last part, the URL in a tooltip (the filter lists whole URLs)."""
    return (
        format_html('<span title="{}">{}</span>', obj.queue, obj.queue.rsplit("/", 1)[-1])
        if obj.queue
        else "-"
    )


class AttendeeTimeColumns:
    first_joined = as_date("first_joined_at", "first joined")
    in_since = as_date("joined_since", "in since")

    @admin.display(description="time in meeting", ordering="joined_ms")
    def time_in_meeting(self, obj: Attendee) -> str:
        """Closed joins only (the roster adds the open one as it goes)."""
        minutes, seconds = divmod(obj.joined_ms // 1000, 60)
        return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


class AttendeeInline(AttendeeTimeColumns, ReadOnlyPermissions, admin.TabularInline):
    model = Attendee
    # What a client sees of a row, as REST (times readable); never the fold's bookkeeping.
    fields = readable(ATTENDEE_FIELDS)
    readonly_fields = fields
    extra = 0
    show_change_link = True


@admin.register(Meeting)
class MeetingAdmin(ReadOnlyAdmin):
    list_display = (
        "meeting_id",
        "external_meeting_id",
        "status",
        "started",
        "joined_count",
        "peak_joined",
        "seq",
        "updated_at",
        "dashboard",
    )
    list_filter = ("status",)
    search_fields = ("meeting_id", "external_meeting_id")
    fields = ("dashboard", "events", *readable(MEETING_FIELDS), "created_at", "updated_at")
    readonly_fields = fields
    inlines = [AttendeeInline]
    started = as_date("started_at", "started")
    ended = as_date("ended_at", "ended")

    @admin.display(description="dashboard")
    def dashboard(self, obj: Meeting) -> str:
        url = reverse("meeting-detail", args=[obj.meeting_id])
        return format_html('<a href="{}">live roster</a>', url)

    @admin.display(description="event log")
    def events(self, obj: Meeting) -> str:
        url = reverse("admin:roster_event_changelist") + "?" + urlencode({"meeting_id": obj.meeting_id})
        return format_html('<a href="{}">events</a>', url)


@admin.register(Attendee)
class AttendeeAdmin(AttendeeTimeColumns, ReadOnlyAdmin):
    list_display = (
        "attendee_id",
        "external_user_id",
        "meeting_named",
        "presence",
        "first_joined",
        "drop_count",
        "seq",
    )
    list_filter = ("presence",)
    search_fields = ("attendee_id", "external_user_id", "meeting__meeting_id")
    fields = ("meeting", *readable(ATTENDEE_FIELDS))
    readonly_fields = fields
    list_select_related = ("meeting",)

    @admin.display(description="meeting", ordering="meeting__external_meeting_id")
    def meeting_named(self, obj: Attendee) -> str:
        return named(obj.meeting.external_meeting_id, obj.meeting.meeting_id)


class EventTypeFilter(admin.SimpleListFilter):
    """Types as the fold reads them: ``AttendeeJoined`` and ``chime:AttendeeJoined`` are one."""

    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request, model_admin) -> list[tuple[str, str]]:
        stored = Event.objects.order_by().values_list("event_type", flat=True).distinct()
        return [(name, name) for name in sorted({type_name(t) for t in stored if t})]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        name = type_name(self.value())
        return queryset.filter(event_type__in=[name, PREFIX + name])


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = (
        "type",
        "kind",
        "source",
        "meeting",
        "attendee",
        "happened",
        queue_name,
        "duplicate_count",
        "received_at",
    )
    list_filter = (EventTypeFilter, "kind", "source", "queue")
    # Ids are pasted whole: exact (case-insensitive) matches, not a LIKE scan of the log.
    search_fields = ("=meeting_id", "=attendee_id", "=key", "=envelope_id", "=sqs_message_id")
    show_full_result_count = False  # the log is large: no second COUNT(*) per page
    fields = (
        "kind",
        "source",
        "detail_type",
        "event_type",
        "meeting_id",
        "attendee_id",
        "parent_id",
        "happened",
        "detail_pretty",
        "key",
        "envelope_id",
        "account",
        "region",
        "queue",
        "sqs_message_id",
        "received_at",
        "duplicate_count",
    )
    readonly_fields = fields
    happened = as_date("timestamp", "timestamp")

    @admin.display(description="event type", ordering="event_type")
    def type(self, obj: Event) -> str:
        return type_name(obj.event_type or obj.detail_type)

    @admin.display(description="meeting", ordering="meeting_id")
    def meeting(self, obj: Event) -> str:
        return named(obj.detail.get("externalMeetingId"), obj.meeting_id)

    @admin.display(description="attendee", ordering="attendee_id")
    def attendee(self, obj: Event) -> str:
        return named(obj.detail.get("externalUserId"), obj.attendee_id)

    @admin.display(description="detail")
    def detail_pretty(self, obj: Event) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.detail, indent=2, ensure_ascii=False))


@admin.register(VoiceConnectorStream)
class VoiceConnectorStreamAdmin(ReadOnlyAdmin):
    list_display = (
        "voice_connector_id",
        "transaction_id",
        "status",
        "call_id",
        "direction",
        "from_number",
        "to_number",
        "status_time",
    )
    list_filter = ("status",)
    status_time = as_date("status_at", "status time")
    search_fields = ("voice_connector_id", "transaction_id", "call_id")


@admin.register(Quarantine)
class QuarantineAdmin(NoAddOrChange, admin.ModelAdmin):
    """Rejected messages, one row per message (``deliveries``: how often it came): read,
    reprocess through the ingest service, or delete."""

    list_display = (
        "received_at",
        "reason_code",
        "short_reason",
        queue_name,
        "deliveries",
        "body_size",
        "truncated",
        "reprocessed",
        "reprocess_outcome",
    )
    list_filter = ("reason_code", "queue", "reprocessed", "reprocess_outcome")
    search_fields = ("reason", "sqs_message_id")
    fields = (
        "received_at",
        "deliveries",
        "last_received_at",
        "reason_code",
        "reason",
        "queue",
        "sqs_message_id",
        "source_key",
        "body_size",
        "truncated",
        "body_pretty",
        "reprocessed",
        "reprocessed_at",
        "reprocess_outcome",
        "reprocess_detail",
    )
    readonly_fields = fields
    actions = ["reprocess"]

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("roster.change_quarantine")

    @admin.display(description="reason")
    def short_reason(self, obj: Quarantine) -> str:
        """Wrapped anywhere (static/roster/admin.css): a reason may quote one long token."""
        return obj.reason if len(obj.reason) <= 120 else obj.reason[:119] + "…"

    @admin.display(description="body")
    def body_pretty(self, obj: Quarantine) -> str:
        note = ""
        if obj.truncated:
            note = format_html(
                "<p><strong>Truncated:</strong> only the first {} of {} bytes were kept; "
                "this body cannot be reprocessed.</p>",
                len(bytes(obj.body)),
                obj.body_size,
            )
        sections = format_html_join("", "<h4>{}</h4><pre>{}</pre>", quarantine_body_sections(quarantine=obj))
        return format_html("{}{}", note, sections)

    @admin.action(description="Reprocess selected", permissions=["reprocess"])
    def reprocess(self, request: HttpRequest, queryset) -> None:
        counts = quarantine_reprocess(quarantine_ids=list(queryset.values_list("pk", flat=True)))
        summary = ", ".join(
            f"{counts[outcome]} {label}"
            for outcome, label in (
                (Quarantine.Outcome.APPLIED, "applied"),
                (Quarantine.Outcome.DUPLICATE, "duplicate"),
                (Quarantine.Outcome.REJECTED, "still rejected"),
                (Quarantine.Outcome.TRUNCATED, "truncated (not reprocessed)"),
                (Quarantine.Outcome.FAILED, "failed"),
                ("skipped", "already done"),
            )
        )
        trouble = counts[Quarantine.Outcome.REJECTED] + counts[Quarantine.Outcome.FAILED]
        self.message_user(
            request, f"Reprocessed: {summary}.", messages.WARNING if trouble else messages.SUCCESS
        )


@admin.register(QueueSource)
class QueueSourceAdmin(admin.ModelAdmin):
    """Queues to drain: enabled and consumers are the operator's; health is measured."""

    list_display = (
        "url",
        "enabled",
        "consumers",
        "backlog",
        "in_flight",
        "oldest_age",
        "last_poll_at",
        "messages_received",
        "last_error_at",
        "health_checked_at",
    )
    list_editable = ("enabled", "consumers")
    HEALTH = (
        "last_poll_at",
        "messages_received",
        "backlog",
        "in_flight",
        "oldest_age",
        "health_checked_at",
        "last_error",
        "last_error_at",
    )
    fields = ("url", "region", "enabled", "consumers", *HEALTH)
    actions = ["refresh_health"]

    def get_readonly_fields(self, request, obj=None) -> tuple[str, ...]:
        return ("url", *self.HEALTH) if obj else self.HEALTH

    @admin.display(description="oldest message", ordering="oldest_age_seconds")
    def oldest_age(self, obj: QueueSource) -> str:
        """Of the drain's last receive: SQS reports no oldest-message age (CloudWatch does)."""
        if obj.oldest_age_seconds is None:
            return "-"
        return f"{obj.oldest_age_seconds:.1f} s"

    def save_model(self, request, obj, form, change) -> None:
        if change:
            queue_source_update(source=obj, fields=form.changed_data)
        else:
            super().save_model(request, obj, form, change)

    @admin.action(description="Refresh health now")
    def refresh_health(self, request: HttpRequest, queryset) -> None:
        refreshed = queue_health_refresh(sources=list(queryset))
        failed = [source.url for source in refreshed if source.backlog is None]
        if failed:
            self.message_user(
                request, f"Health not read for {len(failed)} queue(s); see last error.", messages.WARNING
            )
        else:
            self.message_user(request, f"Health refreshed for {len(refreshed)} queue(s).")


@admin.register(AccessRule)
class AccessRuleAdmin(admin.ModelAdmin):
    list_display = ("meetings", "user", "group", "created_at")
    search_fields = ("meetings", "user__username", "group__name")


class ShownOnceAdmin(admin.ModelAdmin):
    """Rows that hold a secret of which only a hash is stored (feed tokens, host links): created
    through a form whose answer shows the secret once (no-store), never through messages, session
    or cookies; never edited, only revoked (and replaced)."""

    add_fields: tuple[str, ...] = ()
    actions = ["revoke"]

    def get_fields(self, request, obj=None) -> tuple[str, ...]:
        return self.readonly_fields if obj else self.add_fields

    def get_readonly_fields(self, request, obj=None) -> tuple[str, ...]:
        return self.readonly_fields if obj else ()

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def created_context(self, obj) -> dict[str, Any]:
        """What admin/roster/<model>/created.html shows of the row just created, its secret included."""
        raise NotImplementedError

    def response_add(self, request, obj, post_url_continue=None) -> HttpResponse:
        name = self.opts.model_name
        response = TemplateResponse(
            request,
            f"admin/roster/{name}/created.html",
            {
                **self.admin_site.each_context(request),
                "title": f"{capfirst(self.opts.verbose_name)} created",
                "opts": self.opts,
                "changelist_url": reverse(f"admin:roster_{name}_changelist"),
                **self.created_context(obj),
            },
        )
        add_never_cache_headers(response)
        return response

    def revoke_rows(self, request, queryset, *, revoke: Callable[[Any], None], noun: str) -> None:
        rows = list(queryset.filter(revoked_at__isnull=True))
        for row in rows:
            revoke(row)
        self.message_user(request, f"Revoked {len(rows)} {noun}.")


@admin.register(FeedToken)
class FeedTokenAdmin(ShownOnceAdmin):
    """Create (the token is shown once, on the page that answers the form) and revoke."""

    list_display = (
        "name",
        "prefix",
        "meetings",
        "can_mint_host_links",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("revoked_at", "can_mint_host_links")
    search_fields = ("name", "prefix")
    readonly_fields = list_display
    add_fields = ("name", "meetings", "can_mint_host_links")

    def save_model(self, request, obj, form, change) -> None:
        token, raw = feed_token_create(
            name=form.cleaned_data["name"],
            meetings=form.cleaned_data["meetings"],
            can_mint_host_links=form.cleaned_data["can_mint_host_links"],
        )
        obj.pk, obj.prefix, obj.created_at = token.pk, token.prefix, token.created_at
        obj.raw_token = raw  # for the answer to this request only; never stored

    def created_context(self, obj: FeedToken) -> dict[str, Any]:
        return {"token": obj, "raw_token": obj.raw_token}

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset) -> None:
        self.revoke_rows(
            request, queryset, revoke=lambda token: feed_token_revoke(token=token), noun="token(s)"
        )


class HostLinkAddForm(forms.ModelForm):
    """Meetings, lifetime and label; the service judges them (the same rules as REST and the command)."""

    hours = forms.FloatField(initial=DEFAULT_HOURS, help_text="at most HOST_LINK_MAX_HOURS")

    class Meta:
        model = HostLink
        fields = ("meetings", "hours", "label")

    def clean(self) -> dict:
        data = super().clean()
        if not self.errors:
            try:
                host_link_check(meetings=data["meetings"], hours=data["hours"], label=data["label"])
            except HostLinkRefused as refused:
                raise forms.ValidationError(str(refused)) from None
        return data


@admin.register(HostLink)
class HostLinkAdmin(ShownOnceAdmin):
    """Mint (the URL is shown once, on the page that answers the form), list and revoke."""

    list_display = (
        "label",
        "meetings",
        "creator",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("revoked_at", "expires_at", "created_by_token")
    search_fields = ("label", "meetings")
    readonly_fields = list_display
    add_fields = ("meetings", "hours", "label")

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = HostLinkAddForm
        return super().get_form(request, obj, **kwargs)

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("roster.change_hostlink")

    @admin.display(description="creator")
    def creator(self, obj: HostLink) -> str:
        if obj.created_by_user_id:
            return f"user {obj.created_by_user}"
        if obj.created_by_token_id:
            return f"token {obj.created_by_token}"
        return "manage.py host_link"

    def save_model(self, request, obj, form, change) -> None:
        data = form.cleaned_data
        link, url = host_link_create(
            meetings=data["meetings"], hours=data["hours"], label=data["label"], created_by_user=request.user
        )
        obj.pk, obj.created_at, obj.expires_at = link.pk, link.created_at, link.expires_at
        obj.url = url  # for the answer to this request only; never stored

    def created_context(self, obj: HostLink) -> dict[str, Any]:
        return {"link": obj, "url": obj.url}

    @admin.action(description="Revoke selected links", permissions=["revoke"])
    def revoke(self, request, queryset) -> None:
        self.revoke_rows(request, queryset, revoke=lambda link: host_link_revoke(link=link), noun="link(s)")
