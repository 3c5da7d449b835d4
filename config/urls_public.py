"""URLs of the public host (BASE_DOMAIN): the platform admin and the sign-up page."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from messaging import twilio_webhook

admin.site.site_header = "WhatsApp platform: operators"
admin.site.site_title = "Platform admin"
admin.site.index_title = "Tenants and platform settings"

urlpatterns = [
    path("webhooks/twilio/", twilio_webhook.twilio_inbound, name="twilio-inbound"),
    path("webhooks/twilio/status/", twilio_webhook.twilio_status, name="twilio-status"),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("signup/", include("dashboard.public_urls")),
    path("i18n/", include("django.conf.urls.i18n")),
]
