from django.apps import AppConfig


class RosterConfig(AppConfig):
    name = "roster"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Wire the layers above ingest into its hook points (ingest imports none of them), and the
        Chime API into the sockets' (a socket stops at the live layer)."""
        from django.db.models.signals import post_delete, post_save

        from roster.hooks.outbox import deliveries_register, hooks_changed
        from roster.ingest import hooks
        from roster.live import ahead
        from roster.live.broadcast import changes_committed, changes_sent
        from roster.ops.metrics import ingest_committed, pending
        from roster.sources.ahead import meeting_expect

        hooks.after_commit.extend([changes_committed, ingest_committed])  # live clients wait on the first
        hooks.before_exit.extend([changes_sent, pending.flush])  # a forked ingest worker's exit
        hooks.in_transaction.append(deliveries_register)  # the outbound-hook outbox
        for signal in (post_save, post_delete):  # this process sees its own hook edits at once
            signal.connect(lambda **_: hooks_changed(), sender="roster.Hook", weak=False)
        ahead.expecters.append(meeting_expect)  # a socket following a meeting before its first event
