"""The host dashboard's socket: /ws/dashboard/, the same protocol v1, authenticated by the
Django session and with the strict Origin check (routing)."""

from consumers.roster_socket import RosterSocket


class DashboardConsumer(RosterSocket):
    metrics_endpoint = "dashboard"
    allow_token = False
    allow_session = True
