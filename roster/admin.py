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
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.utils.text import capfirst
from django.views.decorators.http import require_POST

from roster.domain.fold import PREFIX, type_name
from roster.domain.hook_events import EVENT_TYPES
from roster.hooks.admin_actions import (
    deliveries_redeliver_selected,
    hook_deliveries_recent,
    hook_pause,
    hook_resume,
    hook_test_send,
)
from roster.hooks.delivery import Outcome
from roster.hooks.outbox import body_with_id
from roster.hooks.selectors import outbox_waiting
from roster.hooks.services import hook_create, hook_secret_rotate
from roster.hooks.targets import TargetRefused, target_parse
from roster.models import (
    AccessRule,
    Attendee,
    Event,
    FeedToken,
    Hook,
    HookDelivery,
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


def secret_page(
    model_admin: admin.ModelAdmin, request: HttpRequest, template: str, *, title: str, context: dict[str, Any]
) -> HttpResponse:
    """The one answer that shows a secret (admin/roster/<model>/<template>.html): never cached,
    never put in messages, session or cookies."""
    opts = model_admin.opts
    response = TemplateResponse(
        request,
        f"admin/roster/{opts.model_name}/{template}.html",
        {
            **model_admin.admin_site.each_context(request),
            "title": f"{capfirst(opts.verbose_name)} {title}",
            "opts": opts,
            "changelist_url": reverse(f"admin:roster_{opts.model_name}_changelist"),
            **context,
        },
    )
    add_never_cache_headers(response)
    return response


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
        return secret_page(self, request, "created", title="created", context=self.created_context(obj))

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


# Outbound hooks (issue #16.4) ----------------------------------------------------------------------


def hook_state(hook: Hook) -> str:
    """Paused, broken by the circuit breaker (since when, why, the next probe), or active."""
    parts = []
    if not hook.enabled:
        parts.append(mark_safe('<strong class="hook-paused">paused</strong> by an operator'))  # noqa: S308
    if hook.broken_at is not None:
        probe = format_html("; next probe {}", date_shown(hook.probe_at)) if hook.probe_at else ""
        parts.append(
            format_html(
                '<strong class="hook-broken">broken</strong> by the circuit breaker since {} after {} '
                "failed attempts: {}{}",
                date_shown(hook.broken_at),
                hook.consecutive_failures,
                hook.broken_reason or "-",
                probe,
            )
        )
    if not parts:
        return mark_safe('<span class="hook-active">active</span>')  # noqa: S308 - a constant
    return format_html_join(mark_safe("<br>"), "{}", ((part,) for part in parts))  # noqa: S308


def date_shown(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")


def outcome_text(outcome: Outcome) -> str:
    code = "no response" if outcome.status_code is None else f"HTTP {outcome.status_code}"
    verdict = "delivered" if outcome.ok else "failed"
    error = f": {outcome.error}" if outcome.error and not outcome.ok else ""
    return f"{verdict} ({code}, {outcome.latency_ms} ms){error}"


def delivery_latency(delivery: HookDelivery) -> str:
    return "-" if delivery.latency_ms is None else f"{delivery.latency_ms} ms"


def delivery_error(delivery: HookDelivery, limit: int = 120) -> str:
    error = delivery.last_error or ""
    return error if len(error) <= limit else error[: limit - 1] + "…"


class HookForm(forms.ModelForm):
    """Target, event types and meetings; the core's rules judge the target (https, loopback http
    when allowed, sns:/sqs: here because operators may set them)."""

    events = forms.MultipleChoiceField(
        choices=[(name, name) for name in EVENT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="none ticked: every type",
    )

    class Meta:
        model = Hook
        fields = ("name", "target", "events", "meetings")

    def clean_target(self) -> str:
        target = self.cleaned_data["target"].strip()
        try:
            target_parse(target=target, operator=True)
        except TargetRefused as refused:
            raise forms.ValidationError(str(refused)) from None
        return target


@admin.register(Hook)
class HookAdmin(admin.ModelAdmin):
    """Create (the secret shown once), filter, pause and resume, test, rotate the secret; the
    breaker's state and the latest deliveries on every page. Operators only: sns:/sqs: allowed."""

    form = HookForm
    change_form_template = "admin/roster/hook/change_form.html"
    list_display = (
        "name",
        "target_shown",
        "events_shown",
        "meetings",
        "state",
        "last_success_at",
        "last_failure_at",
        "deliveries_link",
    )
    list_filter = ("enabled", ("broken_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "target")
    actions = ["send_test", "pause", "resume"]
    STATE = (
        "state",
        "consecutive_failures",
        "last_success_at",
        "last_failure_at",
        "secret_note",
        "creator",
        "created_at",
        "updated_at",
        "recent_deliveries",
    )

    def get_fields(self, request, obj=None) -> tuple[str, ...]:
        return ("name", "target", "events", "meetings", *(self.STATE if obj else ()))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        waiting, oldest = outbox_waiting()
        if waiting:  # not deliveries yet, so no hook's page shows them
            messages.info(
                request,
                f"{waiting} roster change(s) wait in the outbox for a worker to write their deliveries "
                f"(the oldest since {timezone.localtime(oldest):%Y-%m-%d %H:%M:%S}); if this stays, "
                "no Celery worker is running.",
            )
        return super().changelist_view(request, extra_context)

    def get_readonly_fields(self, request, obj=None) -> tuple[str, ...]:
        return self.STATE if obj else ()

    def has_hook_change_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("roster.change_hook")

    has_send_test_permission = has_pause_permission = has_resume_permission = has_hook_change_permission

    @admin.display(description="target", ordering="target")
    def target_shown(self, obj: Hook) -> str:
        return obj.target if len(obj.target) <= 80 else obj.target[:79] + "…"

    @admin.display(description="events")
    def events_shown(self, obj: Hook) -> str:
        return ", ".join(obj.events) if obj.events else "every type"

    @admin.display(description="state")
    def state(self, obj: Hook) -> str:
        return hook_state(obj)

    @admin.display(description="secret")
    def secret_note(self, obj: Hook) -> str:
        until = (
            f"; the previous one signs too until {date_shown(obj.previous_secret_until)}"
            if obj.previous_secret
            and obj.previous_secret_until
            and obj.previous_secret_until > timezone.now()
            else ""
        )
        return f"set (shown once, when made or rotated){until}"

    @admin.display(description="created by")
    def creator(self, obj: Hook) -> str:
        if obj.created_by_user_id:
            return f"user {obj.created_by_user}"
        if obj.created_by_token_id:
            return f"token {obj.created_by_token}"
        return "manage.py hook_create"

    def deliveries_url(self, obj: Hook) -> str:
        return reverse("admin:roster_hookdelivery_changelist") + "?" + urlencode({"hook__id__exact": obj.pk})

    @admin.display(description="deliveries")
    def deliveries_link(self, obj: Hook) -> str:
        return format_html('<a href="{}">deliveries</a>', self.deliveries_url(obj))

    @admin.display(description="latest deliveries")
    def recent_deliveries(self, obj: Hook) -> str:
        rows = hook_deliveries_recent(hook=obj)
        if not rows:
            return "none yet"
        body = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
            "<td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    reverse("admin:roster_hookdelivery_change", args=[d.pk]),
                    date_shown(d.created_at),
                    d.meeting_id,
                    f"{d.seq}" + (f" ({d.part}/{d.payload.parts})" if d.payload.parts > 1 else ""),
                    ", ".join(d.payload.events),
                    d.status,
                    d.attempts,
                    "-" if d.last_status_code is None else d.last_status_code,
                    delivery_latency(d),
                    delivery_error(d),
                )
                for d in rows
            ),
        )
        return format_html(
            '<table class="hook-deliveries"><thead><tr><th>created</th><th>meeting</th><th>seq</th>'
            "<th>events</th><th>status</th><th>attempts</th><th>response</th><th>latency</th>"
            "<th>last error</th></tr></thead><tbody>{}</tbody></table><p>The latest {}, newest first: "
            '<a href="{}">every delivery of this hook</a> (redeliver from there).</p>',
            body,
            len(rows),
            self.deliveries_url(obj),
        )

    def save_model(self, request, obj, form, change) -> None:
        data = form.cleaned_data
        if change:
            obj.save(update_fields=[*form.changed_data, "updated_at"] if form.changed_data else None)
            return
        hook, secret = hook_create(
            name=data["name"],
            target=data["target"],
            events=data["events"],
            meetings=data["meetings"],
            created_by_user=request.user,
        )
        obj.pk, obj.created_at, obj.secret = hook.pk, hook.created_at, hook.secret
        obj.raw_secret = secret  # for the answer to this request only

    def response_add(self, request, obj, post_url_continue=None) -> HttpResponse:
        return secret_page(
            self,
            request,
            "secret",
            title="created",
            context={"hook": obj, "secret": obj.raw_secret, "rotated": False},
        )

    # Buttons on the change page: each a POST (CSRF-checked by admin_view) ------------------------

    def get_urls(self):
        from django.urls import path

        def view(handler):
            return self.admin_site.admin_view(require_POST(handler))

        return [
            path("<path:object_id>/test-delivery/", view(self.test_delivery_view), name="roster_hook_test"),
            path("<path:object_id>/rotate-secret/", view(self.rotate_secret_view), name="roster_hook_rotate"),
            path("<path:object_id>/pause/", view(self.pause_view), name="roster_hook_pause"),
            path("<path:object_id>/resume/", view(self.resume_view), name="roster_hook_resume"),
            *super().get_urls(),
        ]

    def _hook_for_change(self, request: HttpRequest, object_id: str) -> Hook:
        hook = self.get_object(request, object_id)
        if hook is None:
            raise Http404("no such hook")
        if not self.has_change_permission(request, hook):
            raise PermissionDenied
        return hook

    def test_delivery_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        hook = self._hook_for_change(request, object_id)
        outcome = hook_test_send(hook=hook)
        response = TemplateResponse(
            request,
            "admin/roster/hook/tested.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Test delivery to {hook.name}",
                "opts": self.opts,
                "hook": hook,
                "outcome": outcome,
                "changelist_url": reverse("admin:roster_hook_changelist"),
                "change_url": reverse("admin:roster_hook_change", args=[hook.pk]),
            },
        )
        add_never_cache_headers(response)
        return response

    def rotate_secret_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        hook = self._hook_for_change(request, object_id)
        secret = hook_secret_rotate(hook=hook)
        return secret_page(
            self,
            request,
            "secret",
            title="secret rotated",
            context={"hook": hook, "secret": secret, "rotated": True},
        )

    def pause_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        hook = self._hook_for_change(request, object_id)
        self.message_user(
            request, f"{hook} paused." if hook_pause(hook=hook) else f"{hook} was paused already."
        )
        return HttpResponseRedirect(reverse("admin:roster_hook_change", args=[hook.pk]))

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        hook = self._hook_for_change(request, object_id)
        resumed = hook_resume(hook=hook)
        self.message_user(request, f"{hook} resumed." if resumed else f"{hook} was active already.")
        return HttpResponseRedirect(reverse("admin:roster_hook_change", args=[hook.pk]))

    # Actions on the list ----------------------------------------------------------------------

    @admin.action(description="Send a test delivery now", permissions=["send_test"])
    def send_test(self, request: HttpRequest, queryset) -> None:
        for hook in queryset.order_by("name")[:10]:
            outcome = hook_test_send(hook=hook)
            self.message_user(
                request,
                f"Test delivery to {hook}: {outcome_text(outcome)}",
                messages.SUCCESS if outcome.ok else messages.ERROR,
            )

    @admin.action(description="Pause selected hooks", permissions=["pause"])
    def pause(self, request: HttpRequest, queryset) -> None:
        paused = sum(hook_pause(hook=hook) for hook in queryset)
        self.message_user(request, f"Paused {paused} hook(s).")

    @admin.action(description="Resume selected hooks (mends a broken circuit)", permissions=["resume"])
    def resume(self, request: HttpRequest, queryset) -> None:
        resumed = sum(hook_resume(hook=hook) for hook in queryset)
        self.message_user(request, f"Resumed {resumed} hook(s).")


@admin.register(HookDelivery)
class HookDeliveryAdmin(ReadOnlyAdmin):
    """The outbox, newest first: filter by hook and status, redeliver (dead ones included)."""

    list_display = (
        "created_at",
        "hook",
        "meeting_id",
        "seq_part",
        "events_shown",
        "status",
        "attempts",
        "last_status_code",
        "latency",
        "last_attempt_at",
        "error",
    )
    list_filter = ("status", "hook")
    list_select_related = ("hook", "payload")
    search_fields = ("=delivery_id", "=meeting_id")
    ordering = ("-pk",)
    show_full_result_count = False  # the outbox is large: no second COUNT(*) per page
    fields = (
        "hook",
        "delivery_id",
        "meeting_id",
        "seq_part",
        "events_shown",
        "status",
        "attempts",
        "next_attempt_at",
        "last_attempt_at",
        "last_status_code",
        "latency",
        "last_error",
        "created_at",
        "delivered_at",
        "body_pretty",
    )
    readonly_fields = fields
    actions = ["redeliver"]

    def get_queryset(self, request: HttpRequest):  # noqa: ANN201 - Django's signature
        # A page of deliveries reads their payloads' events and parts, not their bodies.
        return super().get_queryset(request).defer("payload__body")

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("roster.change_hookdelivery")

    @admin.display(description="seq", ordering="seq")
    def seq_part(self, obj: HookDelivery) -> str:
        parts = obj.payload.parts
        return f"{obj.seq}" + (f" (part {obj.part}/{parts})" if parts > 1 else "")

    @admin.display(description="events")
    def events_shown(self, obj: HookDelivery) -> str:
        return ", ".join(obj.payload.events)

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: HookDelivery) -> str:
        return delivery_latency(obj)

    @admin.display(description="last error")
    def error(self, obj: HookDelivery) -> str:
        return delivery_error(obj)

    @admin.display(description="body")
    def body_pretty(self, obj: HookDelivery) -> str:
        body = body_with_id(body=obj.payload.body, delivery_id=obj.delivery_id)
        return format_html("<pre>{}</pre>", json.dumps(json.loads(body), indent=2, ensure_ascii=False))

    @admin.action(description="Redeliver selected (dead ones included)", permissions=["redeliver"])
    def redeliver(self, request: HttpRequest, queryset) -> None:
        selected = list(queryset.select_related(None).only("pk", "status"))
        count = deliveries_redeliver_selected(deliveries=selected)
        pending = len(selected) - count
        note = f" ({pending} pending already: on their way)" if pending else ""
        self.message_user(request, f"{count} delivery(ies) queued to be sent again{note}.")
