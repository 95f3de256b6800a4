"""URL routes: admin, the dashboard and the REST API (roster.urls)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("roster.urls")),
    path("", include("roster.sns_urls")),
    path("", include("roster.ops_urls")),
]
