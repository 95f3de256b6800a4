"""The websocket feed for other applications: /ws/feed/, protocol v1 (docs/feed.md).

A token is the credential (Authorization: Bearer header, or a first {"type": "auth"} message),
so a client that sends no Origin header is accepted; a foreign Origin is refused (routing).
"""

from consumers.roster_socket import RosterSocket


class FeedConsumer(RosterSocket):
    metrics_endpoint = "feed"
    allow_token = True
    allow_session = False
