"""URLs of the public host (BASE_DOMAIN): the platform admin."""

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

admin.site.site_header = "WhatsApp platform: operators"
admin.site.site_title = "Platform admin"
admin.site.index_title = "Tenants and platform settings"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
]
