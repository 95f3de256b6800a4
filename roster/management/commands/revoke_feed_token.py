"""Revoke a feed/REST token by name: REST refuses it at once, open sockets close within 5 s."""

from django.core.management.base import BaseCommand, CommandError

from roster.read.access import feed_tokens_revoke


class Command(BaseCommand):
    help = (
        "Revoke every live feed token with this name; REST refuses it at once and open sockets "
        "using it get an error 'revoked' and close (4403) within 5 s. Prints revoked=N name=NAME last."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **options):
        revoked = feed_tokens_revoke(name=name)
        if revoked is None:
            raise CommandError(f"no feed token is named {name!r}")
        if not revoked:
            self.stderr.write(f"every token named {name!r} was already revoked")
        self.stdout.write(f"revoked={revoked} name={name}")
