"""Pages, REST and the SNS HTTPS endpoint; operations are in roster.ops.urls."""

from django.urls import path

from roster.sources.sns_views import sns_endpoint
from roster.web import api, views

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
    path("api/meetings/<str:meeting_id>/attendance", api.api_attendance, name="api-attendance"),
    path("sns/", sns_endpoint, name="sns"),
]
