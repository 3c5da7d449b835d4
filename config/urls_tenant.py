"""URLs of a tenant's host (<slug>.BASE_DOMAIN): its dashboard, API and webhooks."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from messaging import twilio_webhook

urlpatterns = [
    path("webhooks/twilio/", twilio_webhook.twilio_inbound, name="twilio-inbound"),
    path("webhooks/twilio/status/", twilio_webhook.twilio_status, name="twilio-status"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Password reset by email (templates/registration/password_reset_*).
    path("password-reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password-reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/", include("config.api.urls")),  # the REST API (config/api/)
    path("", include("dashboard.urls")),
]
