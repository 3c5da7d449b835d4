"""The ASGI application: Django for HTTP, Channels for websockets (served by uvicorn).

The web server pools its database connections (settings.DATABASE_POOL_MAX_SIZE per
process); other processes (Celery workers, the session runner) import settings without
this module and keep connecting on their own.
"""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.conf import settings

# Only when this module starts the process (uvicorn): a process that loaded the settings
# before importing it (tests, a shell) keeps the connections it may have open as they are.
if not settings.configured and settings.DATABASE_POOL_OPTIONS:
    # Before Django connects: the pool is read from the database's OPTIONS on the first
    # connection. Django returns each request's connection to it when the request ends.
    settings.DATABASES["default"]["OPTIONS"]["pool"] = settings.DATABASE_POOL_OPTIONS
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0  # required by Django's pool

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()  # must run before importing consumers and models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from dashboard.routing import websocket_urlpatterns  # noqa: E402
from dashboard.websocket_auth import TenantAuthMiddleware  # noqa: E402
from messaging.twilio_fast import twilio_fast_path  # noqa: E402

application = ProtocolTypeRouter(
    {
        # POST /webhooks/twilio/ is answered before Django (messaging/twilio_fast.py).
        "http": twilio_fast_path(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            TenantAuthMiddleware(URLRouter(websocket_urlpatterns))
        ),
    }
)

# Everything loaded so far (Django, the apps, their models and URLs) lives as long as the
# process: out of the garbage collector's sight, its full collections no longer walk it.
# They took up to tens of milliseconds in a web worker, straight into some requests'
# latency (the API's p95, README).
gc.freeze()
