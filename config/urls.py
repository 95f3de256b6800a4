"""URL routes: admin, the dashboard and the REST API (roster.web.urls)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("roster.web.urls")),
    path("", include("roster.ops.urls")),
]
