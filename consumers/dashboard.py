"""The host dashboard's socket: /ws/dashboard/, the same protocol v1, authenticated by the
Django session and with the strict Origin check (routing)."""

from consumers.protocol import RosterSocket


class DashboardConsumer(RosterSocket):
    allow_token = False
    allow_session = True
