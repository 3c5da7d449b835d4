"""URLs of a tenant's host (<slug>.BASE_DOMAIN): its dashboard, API and webhooks."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from messaging import twilio_webhook

urlpatterns = [
    path("webhooks/twilio/", twilio_webhook.twilio_inbound, name="twilio-inbound"),
    path("webhooks/twilio/status/", twilio_webhook.twilio_status, name="twilio-status"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("dashboard.urls")),
]
