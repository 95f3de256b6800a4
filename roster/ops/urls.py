"""Operations (roster.ops.views), included at the site root by config.urls."""

from django.urls import path

from roster.ops import views as ops_views

urlpatterns = [
    path("healthz", ops_views.healthz, name="healthz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("streams/", ops_views.streams_page, name="streams"),
    path("api/voice-connector-streams", ops_views.api_streams, name="api-streams"),
    path("api/queue-lag", ops_views.api_queue_lag, name="api-queue-lag"),
]
