"""The SNS HTTPS endpoint (roster.sns_views), included at the site root by config.urls."""

from django.urls import path

from roster.sns_views import sns_endpoint

urlpatterns = [path("sns/", sns_endpoint, name="sns")]
