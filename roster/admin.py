"""Admin for operators. Derived rows are read-only: only roster.ingest writes them."""

from __future__ import annotations

from django.contrib import admin

from roster.models import (
    AccessRule,
    Attendee,
    Event,
    FeedToken,
    Meeting,
    Quarantine,
    QueueSource,
    VoiceConnectorStream,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Derived state and the event log: visible, never hand-editable."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class AttendeeInline(admin.TabularInline):
    model = Attendee
    fields = (
        "attendee_id",
        "external_user_id",
        "presence",
        "network_type",
        "video",
        "screen_share",
        "content_share",
        "content_video",
        "drop_count",
        "joined_ms",
        "seq",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Meeting)
class MeetingAdmin(ReadOnlyAdmin):
    list_display = (
        "meeting_id",
        "external_meeting_id",
        "status",
        "joined_count",
        "peak_joined",
        "seq",
        "updated_at",
    )
    list_filter = ("status",)
    search_fields = ("meeting_id", "external_meeting_id")
    inlines = [AttendeeInline]


@admin.register(Attendee)
class AttendeeAdmin(ReadOnlyAdmin):
    list_display = ("attendee_id", "external_user_id", "meeting", "presence", "drop_count", "seq")
    list_filter = ("presence",)
    search_fields = ("attendee_id", "external_user_id", "meeting__meeting_id")


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = (
        "event_type",
        "meeting_id",
        "attendee_id",
        "timestamp",
        "queue",
        "duplicate_count",
        "received_at",
    )
    list_filter = ("kind", "event_type", "queue")
    search_fields = ("meeting_id", "attendee_id", "envelope_id", "sqs_message_id")


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
    )
    list_filter = ("status",)
    search_fields = ("voice_connector_id", "transaction_id", "call_id")


@admin.register(Quarantine)
class QuarantineAdmin(ReadOnlyAdmin):
    list_display = ("reason_code", "reason", "queue", "body_size", "received_at", "reprocessed")
    list_filter = ("reason_code", "reprocessed", "queue")
    search_fields = ("sqs_message_id", "reason")
    readonly_fields = (
        "body_text",
        "body_size",
        "truncated",
        "reason_code",
        "reason",
        "queue",
        "sqs_message_id",
        "received_at",
        "reprocessed",
        "reprocessed_at",
    )
    exclude = ("body",)

    def has_delete_permission(self, request, obj=None) -> bool:
        return True


@admin.register(QueueSource)
class QueueSourceAdmin(admin.ModelAdmin):
    list_display = ("url", "enabled", "consumers", "last_poll_at", "messages_received", "last_error_at")
    list_editable = ("enabled", "consumers")
    readonly_fields = ("last_poll_at", "last_error", "last_error_at", "messages_received")


@admin.register(AccessRule)
class AccessRuleAdmin(admin.ModelAdmin):
    list_display = ("meetings", "user", "group", "created_at")
    search_fields = ("meetings", "user__username", "group__name")


@admin.register(FeedToken)
class FeedTokenAdmin(admin.ModelAdmin):
    """Tokens are created with `manage.py create_feed_token` (shown once); here they are revoked."""

    list_display = ("name", "prefix", "meetings", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("name", "prefix", "meetings", "created_at", "last_used_at", "revoked_at")
    exclude = ("token_hash",)
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset) -> None:
        from roster.access import feed_token_revoke

        for token in queryset.filter(revoked_at__isnull=True):
            feed_token_revoke(token=token)
