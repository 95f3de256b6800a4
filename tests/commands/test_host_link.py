"""host_link and create_feed_token --can-mint-host-links: one URL alone on the last line of stdout,
lifetimes bounded by HOST_LINK_MAX_HOURS, the minting flag stored."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from roster.models import FeedToken, HostLink
from roster.read.host_links import host_link_verify

pytestmark = pytest.mark.django_db


def host_link(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("host_link", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_host_link_prints_one_url_alone_on_the_last_line(settings):
    settings.PUBLIC_BASE_URL = "https://roster.example.com"
    out, err = host_link("sales-emea", "--label", "Q3 review")
    lines = out.splitlines()
    assert len(lines) == 1 and lines[-1] == out.strip()
    url = lines[-1]
    assert url.startswith("https://roster.example.com/link/#") and url not in err
    link = HostLink.objects.get()
    assert host_link_verify(value=url.partition("#")[2]) == link
    assert (link.meetings, link.label, link.created_by_user, link.created_by_token) == (
        "sales-emea",
        "Q3 review",
        None,
        None,
    )
    assert timedelta(hours=3, minutes=59) < link.expires_at - timezone.now() <= timedelta(hours=4)  # default


def test_host_link_hours_are_bounded(settings):
    host_link("sales-*", "--hours", "24")
    host_link("sales-*", "--hours", "0.5")
    for hours in ("24.5", "0", "-2"):
        with pytest.raises(CommandError, match="HOST_LINK_MAX_HOURS"):
            host_link("sales-*", "--hours", hours)
    settings.HOST_LINK_MAX_HOURS = 72
    host_link("sales-*", "--hours", "48")
    assert HostLink.objects.count() == 3


def test_host_link_refuses_an_empty_meeting():
    with pytest.raises(CommandError, match="meetings"):
        host_link(" ")
    assert not HostLink.objects.exists()


def test_create_feed_token_can_mint_host_links(capsys):
    call_command("create_feed_token", "crm", "--meetings", "sales-*", "--can-mint-host-links")
    call_command("create_feed_token", "wallboard")
    assert len(capsys.readouterr().out.splitlines()) == 2
    minting = dict(FeedToken.objects.values_list("name", "can_mint_host_links"))
    assert minting == {"crm": True, "wallboard": False}
