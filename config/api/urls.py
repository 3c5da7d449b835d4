"""The API's addresses on a tenant's host: /api/v1/..., /api/schema/, /api/docs/.

Every other /api/ address answers 404 in the API's error shape."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from config.api.errors import api_not_found
from messaging.api import (
    ConversationViewSet,
    MessageViewSet,
    WebhookEndpointViewSet,
    uploaded_media,
)
from orders.api import MenuItemViewSet, OrderViewSet
from sessions_app.api import SessionViewSet


class OptionalSlashRouter(SimpleRouter):
    """/api/v1/messages and /api/v1/messages/ both work."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("sessions", SessionViewSet, basename="sessions")
router.register("messages", MessageViewSet, basename="messages")
router.register("conversations", ConversationViewSet, basename="conversations")
router.register("orders", OrderViewSet, basename="orders")
router.register("menu-items", MenuItemViewSet, basename="menu-items")
router.register("webhook-endpoints", WebhookEndpointViewSet, basename="webhook-endpoints")


class SchemaView(SpectacularAPIView):
    """The schema is public (no key): it describes, it gives nothing away."""

    authentication_classes = ()
    permission_classes = ()
    throttle_classes = ()


class DocsView(SpectacularSwaggerView):
    authentication_classes = ()
    permission_classes = ()
    throttle_classes = ()


app_name = "api"

urlpatterns = [
    path(
        "v1/media/<str:token>/<str:name>",
        uploaded_media,
        name="uploaded-media",
    ),
    path("v1/", include(router.urls)),
    path("schema/", SchemaView.as_view(), name="schema"),
    path("docs/", DocsView.as_view(url_name="api:schema"), name="docs"),
    re_path(r"^[\s\S]*$", api_not_found),  # any character, a newline included
]
