"""Host sign-in on the project's own pages: login (CSRF, a safe ``next``), logout by POST, password
change, password reset by email (Django's locmem outbox in tests), the header per user, the empty
list that says why, and EMAIL_URL read by the settings."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client

from roster.dev.processes import ROOT
from roster.models import AccessRule

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple gun lighthouse"


@pytest.fixture
def host() -> User:
    return User.objects.create_user("host", email="host@example.com", password=PASSWORD)


def sign_in(client: Client, username: str, password: str, *, next_url: str = "") -> object:
    return client.post("/login/", {"username": username, "password": password, "next": next_url})


def signed_in_as(client: Client) -> str | None:
    return client.session.get("_auth_user_id")


def test_login_page_is_ours_not_admins(client):
    page = client.get("/login/?next=/meetings/m-1/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "<title>Sign in · chime-roster</title>" in html and 'class="brand"' in html
    assert "Django administration" not in html and "connection-status" not in html  # no live parts
    assert 'name="csrfmiddlewaretoken"' in html and 'name="next" value="/meetings/m-1/"' in html
    assert 'href="/password_reset/"' in html


def test_host_signs_in_and_lands_on_next(client, host):
    response = sign_in(client, "host", PASSWORD, next_url="/meetings/m-1/")
    assert response.status_code == 302 and response["Location"] == "/meetings/m-1/"
    assert signed_in_as(client) == str(host.pk)


def test_a_wrong_password_says_so_and_signs_nobody_in(client, host):
    response = sign_in(client, "host", "wrong")
    assert response.status_code == 200 and b"Please enter a correct username and password" in response.content
    assert signed_in_as(client) is None


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "http://testserver.evil/"])
def test_next_never_leaves_the_site(client, host, target):
    response = sign_in(client, "host", PASSWORD, next_url=target)
    assert response.status_code == 302 and response["Location"] == "/"


def test_staff_sign_in_here_and_keep_admin(client):
    User.objects.create_user("ops", password=PASSWORD, is_staff=True, is_superuser=True)
    assert sign_in(client, "ops", PASSWORD)["Location"] == "/"
    assert client.get("/admin/").status_code == 200


def test_forms_refuse_a_post_without_the_csrf_token(host):
    client = Client(enforce_csrf_checks=True)
    assert sign_in(client, "host", PASSWORD).status_code == 403
    client.force_login(host)
    assert client.post("/logout/").status_code == 403
    assert signed_in_as(client) == str(host.pk)


def test_pages_send_strangers_to_our_login(client):
    response = client.get("/meetings/m-1/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/meetings/m-1/"


def test_header_signs_out_by_post_and_shows_admin_to_staff_only(client, host):
    client.force_login(host)
    html = client.get("/").content.decode()
    assert re.search(
        r'<form class="sign-out" method="post" action="/logout/">\s*<input type="hidden" name="csrf', html
    )
    assert 'href="/password_change/"' in html and 'href="/admin/"' not in html
    client.force_login(User.objects.create_user("ops", password=PASSWORD, is_staff=True))
    assert 'href="/admin/"' in client.get("/").content.decode()


def test_header_escapes_the_username(client):
    client.force_login(User.objects.create_user("<b>eve</b>", password=PASSWORD))
    html = client.get("/").content.decode()
    assert "<b>eve</b>" not in html and "&lt;b&gt;eve&lt;/b&gt;" in html


def test_logout_is_a_post_and_ends_the_session(client, host):
    client.force_login(host)
    assert client.get("/logout/").status_code == 405  # a link or an image cannot sign anyone out
    response = client.post("/logout/")
    assert response.status_code == 200 and b"You are signed out" in response.content
    assert signed_in_as(client) is None
    assert client.get("/")["Location"] == "/login/?next=/"


def test_password_change(client, host):
    assert client.get("/password_change/")["Location"] == "/login/?next=/password_change/"
    client.force_login(host)
    refused = client.post(
        "/password_change/",
        {"old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert refused.status_code == 200 and b"Your old password was entered incorrectly" in refused.content
    response = client.post(
        "/password_change/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/password_change/done/"
    assert b"Your password was changed" in response.content
    assert signed_in_as(client) == str(host.pk)  # this session stays signed in
    fresh = Client()
    assert sign_in(fresh, "host", PASSWORD).status_code == 200  # the old one no longer works
    assert sign_in(fresh, "host", NEW_PASSWORD).status_code == 302


def test_password_reset_mail_link_sets_a_new_password(client, host, settings):
    settings.ALLOWED_HOSTS = ["roster.example.com"]
    elsewhere = Client(HTTP_HOST="roster.example.com")
    elsewhere.force_login(host)  # another browser, signed in before the reset
    response = client.post("/password_reset/", {"email": "host@example.com"}, HTTP_HOST="roster.example.com")
    assert response["Location"] == "/password_reset/done/"
    (message,) = mail.outbox
    assert message.to == ["host@example.com"] and message.subject == "chime-roster: choose a new password"
    assert message.from_email == settings.DEFAULT_FROM_EMAIL
    assert '"host"' in message.body and "&quot;" not in message.body  # plain text, not HTML-escaped
    # The link is on the host the request came to (Django checks it against ALLOWED_HOSTS).
    link = re.search(r"http://roster\.example\.com(/reset/\S+/\S+/)", message.body).group(1)

    form = client.get(link, HTTP_HOST="roster.example.com", follow=True)
    assert b'name="new_password1"' in form.content  # the token moved to the session: a valid link
    set_url = form.redirect_chain[-1][0]
    done = client.post(
        set_url,
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        HTTP_HOST="roster.example.com",
    )
    assert done["Location"] == "/reset/done/"
    assert elsewhere.get("/")["Location"] == "/login/?next=/"  # signed out by the new password
    assert sign_in(Client(HTTP_HOST="roster.example.com"), "host", NEW_PASSWORD).status_code == 302
    again = client.get(link, HTTP_HOST="roster.example.com", follow=True)
    assert b"This link is not valid" in again.content  # used once


def test_password_reset_tells_nobody_which_addresses_exist(client, host):
    known = client.post("/password_reset/", {"email": "host@example.com"})
    unknown = client.post("/password_reset/", {"email": "nobody@example.com"})
    assert known["Location"] == unknown["Location"] == "/password_reset/done/"
    assert [m.to for m in mail.outbox] == [["host@example.com"]]


def test_password_reset_refuses_a_forged_host(client, host):
    response = client.post("/password_reset/", {"email": "host@example.com"}, HTTP_HOST="evil.example")
    assert response.status_code == 400 and mail.outbox == []  # no link on an attacker's host


def test_empty_list_says_why(client, host, admin_client):
    client.force_login(host)
    assert b"No meeting is shared with you yet" in client.get("/").content
    AccessRule.objects.create(user=host, meetings="sales-*")  # a rule, but no meeting matches it yet
    page = client.get("/").content.decode()
    assert "No meeting is shared" not in page and "No meetings yet" in page
    assert 'data-empty-text="No meetings yet.' in page  # the text the live list shows too
    assert b"No meetings yet" in admin_client.get("/").content


@pytest.mark.once
def test_email_url_and_sender_come_from_the_environment():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS, s.DEFAULT_FROM_EMAIL)"
    )

    def settings_with(**environ: str) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("EMAIL_URL", "DEFAULT_FROM_EMAIL")}
        env.update(environ, DJANGO_SETTINGS_MODULE="config.settings")
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert settings_with().startswith("django.core.mail.backends.console.EmailBackend ")
    configured = settings_with(
        EMAIL_URL="smtp+tls://mailer:secret@smtp.example.com:587", DEFAULT_FROM_EMAIL="roster@example.com"
    )
    assert (
        configured
        == "django.core.mail.backends.smtp.EmailBackend smtp.example.com 587 True roster@example.com"
    )
