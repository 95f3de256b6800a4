from django.apps import AppConfig


class RosterConfig(AppConfig):
    name = "roster"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Wire the layers above ingest into its hook points (ingest imports none of them), and the
        Chime API into the sockets' (a socket stops at the live layer)."""
        from roster.ingest import hooks
        from roster.live import ahead
        from roster.live.broadcast import changes_committed
        from roster.ops.metrics import ingest_committed
        from roster.sources.ahead import meeting_expect

        hooks.after_commit.extend([changes_committed, ingest_committed])  # live clients wait on the first
        ahead.expecters.append(meeting_expect)  # a socket following a meeting before its first event
