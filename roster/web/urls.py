"""Pages, REST, host sign-in and the SNS HTTPS endpoint; operations are in roster.ops.urls."""

from typing import Any

from django.contrib.auth import views as auth
from django.urls import path

from roster.sources.sns_views import sns_endpoint
from roster.web import api, host_links, views


def _signin(view: type, page: str, **options: Any):
    """One of Django's sign-in views on our own template (roster/auth/), never admin's (admin keeps
    its own for staff at /admin/)."""
    return view.as_view(template_name=f"roster/auth/{page}.html", **options)


urlpatterns = [
    path("", views.meeting_list, name="meeting-list"),
    path("meetings/<str:meeting_id>/", views.meeting_detail, name="meeting-detail"),
    path("meetings/<str:meeting_id>/attendance.csv", views.attendance_csv, name="attendance-csv"),
    path(
        "meetings/<str:meeting_id>/attendance-summary.csv",
        views.attendance_summary_csv,
        name="attendance-summary-csv",
    ),
    path("api/meetings/", api.api_meetings, name="api-meetings"),
    path("api/meetings/<str:meeting_id>/roster", api.api_roster, name="api-roster"),
    path("api/meetings/<str:meeting_id>/timeline", api.api_timeline, name="api-timeline"),
    path("api/host-links", api.api_host_links, name="api-host-links"),
    path("api/hooks", api.api_hooks, name="api-hooks"),
    path("api/hooks/<int:hook_id>", api.api_hook, name="api-hook"),
    path("api/hooks/<int:hook_id>/<str:action>", api.api_hook_action, name="api-hook-action"),
    path("link/", host_links.host_link_open, name="host-link"),
    path("api/meetings/<str:meeting_id>/attendance", api.api_attendance, name="api-attendance"),
    path("sns/", sns_endpoint, name="sns"),
    # Sign-in: Django's views and URL names (their success URLs reverse these names).
    path("login/", _signin(auth.LoginView, "login", extra_context={"title": "Sign in"}), name="login"),
    path(
        "logout/",
        _signin(auth.LogoutView, "logged_out", extra_context={"title": "Signed out"}),
        name="logout",
    ),
    path(
        "password_change/", _signin(auth.PasswordChangeView, "password_change_form"), name="password_change"
    ),
    path(
        "password_change/done/",
        _signin(auth.PasswordChangeDoneView, "password_change_done"),
        name="password_change_done",
    ),
    path(
        "password_reset/",
        _signin(
            auth.PasswordResetView,
            "password_reset_form",
            email_template_name="roster/auth/password_reset_email.txt",
            subject_template_name="roster/auth/password_reset_subject.txt",
        ),
        name="password_reset",
    ),
    path(
        "password_reset/done/",
        _signin(auth.PasswordResetDoneView, "password_reset_done"),
        name="password_reset_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        _signin(auth.PasswordResetConfirmView, "password_reset_confirm"),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        _signin(auth.PasswordResetCompleteView, "password_reset_complete"),
        name="password_reset_complete",
    ),
]
