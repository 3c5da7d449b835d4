"""Settings, all read from the environment (django-environ). `.env.example` lists each one.

APP_ENV=production refuses to start without its secrets; development and test have
safe defaults that point at the embedded PostgreSQL and Redis (config/embedded.py).
"""

import warnings
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config.embedded import EMBEDDED_DATABASE_URL, EMBEDDED_REDIS_URL

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

APP_ENV = env.str("APP_ENV", default="development")
if APP_ENV not in ("development", "test", "production"):
    raise ImproperlyConfigured(f"APP_ENV must be development, test or production, not {APP_ENV!r}")
PRODUCTION = APP_ENV == "production"

_REQUIRED_IN_PRODUCTION = (
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "FIELD_ENCRYPTION_KEYS",
    "BASE_DOMAIN",
    "PUBLIC_URL",
    "METRICS_TOKEN",
)
if PRODUCTION:
    _missing = [name for name in _REQUIRED_IN_PRODUCTION if not env.str(name, default="")]
    if _missing:
        raise ImproperlyConfigured(
            "Production refuses to start without: " + ", ".join(_missing) + ". See .env.example."
        )

_DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me-0123456789"  # noqa: S105
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY)
DEBUG = env.bool("DEBUG", default=not PRODUCTION)

# Tenants live at <slug>.<BASE_DOMAIN>; the platform admin at BASE_DOMAIN itself.
BASE_DOMAIN = env.str("BASE_DOMAIN", default="localhost")
PUBLIC_URL = env.str("PUBLIC_URL", default=f"http://{BASE_DOMAIN}:8000").rstrip("/")
ALLOWED_HOSTS = [BASE_DOMAIN, f".{BASE_DOMAIN}", *env.list("EXTRA_ALLOWED_HOSTS", default=[])]
if not PRODUCTION:
    ALLOWED_HOSTS += ["127.0.0.1", "testserver"]
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS",
    default=[
        f"http://*.{BASE_DOMAIN}:8000",
        f"https://*.{BASE_DOMAIN}",
        f"http://{BASE_DOMAIN}:8000",
    ],
)

# Fernet keys for provider credentials at rest; the first encrypts, all decrypt (rotation).
_DEV_FIELD_KEY = "8DKChZ8Ej0Vxkz2a51Gj5uY2d6OsSxKmiK12tWX8Y3Y="  # public: development only
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[_DEV_FIELD_KEY])

# Twilio's REST API; empty means the real one. Tests point the real SDK at a stand-in.
TWILIO_API_BASE_URL = env.str("TWILIO_API_BASE_URL", default="").rstrip("/")

# /metrics answers only `Authorization: Bearer <METRICS_TOKEN>` (config/metrics.py).
_DEV_METRICS_TOKEN = "dev-metrics-token"  # noqa: S105
METRICS_TOKEN = env.str("METRICS_TOKEN", default="" if PRODUCTION else _DEV_METRICS_TOKEN)

if PRODUCTION:
    _unsafe = []
    if SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 32:
        _unsafe.append("SECRET_KEY must be a long random value, not the development one")
    if _DEV_FIELD_KEY in FIELD_ENCRYPTION_KEYS:
        _unsafe.append("FIELD_ENCRYPTION_KEYS must not contain the development key")
    try:
        from cryptography.fernet import Fernet

        for _key in FIELD_ENCRYPTION_KEYS:
            Fernet(_key)
    except ValueError:
        _unsafe.append("every FIELD_ENCRYPTION_KEYS entry must be a Fernet key (see .env.example)")
    if DEBUG:
        _unsafe.append("DEBUG must be off")
    if METRICS_TOKEN == _DEV_METRICS_TOKEN or len(METRICS_TOKEN) < 16:
        _unsafe.append("METRICS_TOKEN must be a random value of 16 characters or more")
    if _unsafe:
        raise ImproperlyConfigured("Production refuses to start: " + "; ".join(_unsafe) + ".")

# --- applications: django-tenants splits them between the public and tenant schemas

SHARED_APPS = [
    "django_tenants",
    "tenants",
    "sessions_app",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_celery_beat",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "dashboard",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "dashboard",
    "messaging",
    "orders",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
# New tenants are cloned from this always-migrated template schema (fast provisioning).
TENANT_BASE_SCHEMA = "tenant_template"
TENANT_CREATION_FAKES_MIGRATIONS = True
PUBLIC_SCHEMA_URLCONF = "config.urls_public"
ROOT_URLCONF = "config.urls_tenant"

MIDDLEWARE = [
    "config.metrics.MetricsMiddleware",
    "config.health.HealthMiddleware",
    "tenants.middleware.TenantMiddleware",
    "tenants.middleware.SuspendedTenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: runs the stack above in the views' thread (config/middleware.py says why).
    "config.middleware.SyncStackMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

ASGI_APPLICATION = "config.asgi.application"

# --- data stores

_database = env.db_url("DATABASE_URL", default=EMBEDDED_DATABASE_URL)
_database["ENGINE"] = "django_tenants.postgresql_backend"
_database["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
_database["CONN_HEALTH_CHECKS"] = True
_database.setdefault("OPTIONS", {})["connect_timeout"] = 5
# Prepared statements: psycopg binds parameters on the server and prepares a query the
# second time a connection runs it, so PostgreSQL parses and plans the hot queries (the
# Twilio sender's, the API's) once per connection instead of every time; a third of the
# database's CPU per sent message. A switch of tenant (search_path) makes PostgreSQL
# re-plan, never reuse another schema's plan. Turn off behind a PgBouncer in transaction
# mode older than 1.21 (prepared statements are per server connection).
if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
    _database["OPTIONS"].update(server_side_binding=True, prepare_threshold=2)
_database["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", default=f"test_{_database['NAME']}")}
DATABASES = {"default": _database}

# Each web process (every uvicorn worker) keeps a pool of at most this many connections
# (Django's psycopg pool) instead of connecting for every request; config/asgi.py turns
# it on for the web server only. Celery workers (Celery closes a pool after each task in
# its prefork children) and the session runner connect as DATABASE_CONN_MAX_AGE says.
# A request waits up to 5 seconds for a free connection, then gets a 503. 0: no pool.
# The Twilio webhook's fast path (messaging/twilio_fast.py) keeps its own async pool of
# the same size in each web process.
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=8)
DATABASE_POOL_OPTIONS = (
    {"min_size": min(2, DATABASE_POOL_MAX_SIZE), "max_size": DATABASE_POOL_MAX_SIZE, "timeout": 5}
    if DATABASE_POOL_MAX_SIZE > 0
    else None
)
# django-tenants sends `SET search_path` once per connection and per schema switch rather
# than before every query. Safe with pooled connections: its DatabaseWrapper forgets the
# path it set whenever it hands its connection back (close), rolls back, or switches
# schema, so the first query on a connection taken from the pool always sets the path
# again. tests/test_tenancy.py checks it through a real server with a one-connection pool.
TENANT_LIMIT_SET_CALLS = True


# neonize's device store (whatsmeow's keys and sessions of every linked WhatsApp number):
# the whatsmeow_* tables neonize creates itself, in the public schema (the first one on
# the default search_path). Only the session runner uses it. Empty: the database Django
# uses (sessions_app.providers.neonize_provider.neonize_store_url derives it).
NEONIZE_DATABASE_URL = env.str("NEONIZE_DATABASE_URL", default="")
# SOCKS5 proxy for neonize sessions without one of their own (socks5://user:pass@host:port).
NEONIZE_DEFAULT_PROXY = env.str("NEONIZE_DEFAULT_PROXY", default="")

DATABASE_ROUTERS = ("django_tenants.routers.TenantSyncRouter",)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default=EMBEDDED_REDIS_URL)

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # The layer's blocking read (BZPOPMIN) waits up to 5 s; redis-py's default read
            # timeout is also 5 s, which killed idle dashboard sockets: give it room.
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
            "prefix": "asgi",
            "capacity": 1000,
            "expiry": 60,
        },
    }
}

# --- Celery (config/celery.py); the tenant schema travels in every task's headers

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=REDIS_URL)
CELERY_RESULT_EXPIRES = 3600
# Nobody waits for a task's result but /health/?deep=1 (config.health_probe keeps its
# own): storing none also spares the sender a result-backend subscription per task.
CELERY_TASK_IGNORE_RESULT = True
# One result backend per process, not one per thread (the web serves each request in a
# thread of its own, and would build a new backend and Redis pool for each).
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task taken by a worker that died (late acknowledgement) goes back to its queue after
# this long; every countdown the product uses stays well within it (messaging/outbound.py).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS", default=3600)
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fix-up closes every database connection before and after each task
# unless this is set; config/celery.py closes them after a task only when Django would
# (DATABASE_CONN_MAX_AGE, health checks), so a busy worker stops reconnecting per task.
CELERY_DB_REUSE_MAX = 10**9
# tenant-schemas-celery looks the tenant up for every task without it (a query each).
CELERY_TASK_TENANT_CACHE_SECONDS = 60
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = False
CELERY_IMPORTS = ["config.tasks", "messaging.inbound_tasks", "messaging.webhook_tasks"]

# Heartbeats of workers and session runners, read by /health/.
HEARTBEAT_INTERVAL_SECONDS = env.int("HEARTBEAT_INTERVAL_SECONDS", default=10)
HEARTBEAT_STALE_SECONDS = env.int("HEARTBEAT_STALE_SECONDS", default=30)
# A runner holds each session through a Redis lease of this many seconds, renewed on
# every tick; a dead runner's sessions move within about this time plus one scan.
SESSION_LEASE_TTL_SECONDS = env.int("SESSION_LEASE_TTL_SECONDS", default=10)
SESSION_SCAN_SECONDS = env.float("SESSION_SCAN_SECONDS", default=2.0)

# Outgoing webhooks (messaging/webhooks.py). Each attempt waits this long for an answer.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
# Timeouts, connection errors, 408, 429 and 5xx are retried after this delay, doubling
# each time (at most an hour, with jitter), until this window after the event has passed.
WEBHOOK_RETRY_BASE_SECONDS = env.float("WEBHOOK_RETRY_BASE_SECONDS", default=30.0)
WEBHOOK_RETRY_WINDOW_SECONDS = env.int("WEBHOOK_RETRY_WINDOW_SECONDS", default=24 * 3600)
# The Celery queue of webhook tasks; "celery" is the default queue every worker reads.
WEBHOOK_QUEUE = env.str("WEBHOOK_QUEUE", default="celery")
# How often beat re-queues pending deliveries nobody has claimed (a lost task, a restart).
WEBHOOK_SWEEP_SECONDS = env.int("WEBHOOK_SWEEP_SECONDS", default=30)
# Off: the SSRF guard refuses loopback, private, link-local and reserved addresses.
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=not PRODUCTION)
# The messages sweep (messaging/sweeps.py), run by beat this often: a queued outbound
# message this long past its due time, and an inbound one this long unrouted, lost its
# hand-off (Redis down, a process killed) and is handed again.
MESSAGES_SWEEP_SECONDS = env.int("MESSAGES_SWEEP_SECONDS", default=60)
OUTBOUND_SWEEP_GRACE_SECONDS = env.int("OUTBOUND_SWEEP_GRACE_SECONDS", default=300)
INBOUND_SWEEP_GRACE_SECONDS = env.int("INBOUND_SWEEP_GRACE_SECONDS", default=60)

# Alerts (sessions_app/incidents.py): the platform's operators get every incident by
# email; a tenant's owners get their own. Checked by beat every OPERATIONS_CHECK_SECONDS.
PLATFORM_ALERT_EMAILS = env.list("PLATFORM_ALERT_EMAILS", default=[])
OPERATIONS_CHECK_SECONDS = env.int("OPERATIONS_CHECK_SECONDS", default=60)
# Dead letters in the last hour that make an incident for the tenant.
DEAD_LETTER_ALERT_THRESHOLD = env.int("DEAD_LETTER_ALERT_THRESHOLD", default=10)
# A tenant whose contacts blocked or reported the number above this share (of at least
# BLOCK_RATE_MIN_CONTACTS contacts) gets an incident.
BLOCK_RATE_ALERT_PERCENT = env.float("BLOCK_RATE_ALERT_PERCENT", default=5.0)
BLOCK_RATE_MIN_CONTACTS = env.int("BLOCK_RATE_MIN_CONTACTS", default=20)

# Run by beat (django-celery-beat copies this into its database schedule at start).
CELERY_BEAT_SCHEDULE = {
    "sessions.operations_check": {
        "task": "sessions.operations_check",
        "schedule": OPERATIONS_CHECK_SECONDS,
        "options": {"expire_seconds": OPERATIONS_CHECK_SECONDS * 5},
    },
    "messaging.webhook_deliveries_sweep": {
        "task": "messaging.webhook_deliveries_sweep",
        "schedule": WEBHOOK_SWEEP_SECONDS,
        # Sweeps do not pile up while workers are down: one still queued after ten
        # periods is dropped (the next one does the same work).
        "options": {"queue": WEBHOOK_QUEUE, "expire_seconds": WEBHOOK_SWEEP_SECONDS * 10},
    },
}

# Orders (orders/tasks.py): due rating prompts, late-order alerts and quiet bot
# conversations are looked at in every tenant every ORDERS_SWEEP_SECONDS.
ORDERS_SWEEP_SECONDS = env.int("ORDERS_SWEEP_SECONDS", default=30)
CELERY_BEAT_SCHEDULE["messaging.messages_sweep"] = {
    "task": "messaging.messages_sweep",
    "schedule": MESSAGES_SWEEP_SECONDS,
    "options": {"expire_seconds": MESSAGES_SWEEP_SECONDS * 5},
}
CELERY_BEAT_SCHEDULE["orders.orders_sweep"] = {
    "task": "orders.orders_sweep",
    "schedule": ORDERS_SWEEP_SECONDS,
    "options": {"expire_seconds": ORDERS_SWEEP_SECONDS * 5},
}

# Owner menu (messaging/owner_menu/): expired steps are told to their owner and due
# reminders delivered (those also have an ETA task of their own), in every tenant.
CELERY_IMPORTS += ["messaging.owner_menu.tasks"]
CELERY_BEAT_SCHEDULE["messaging.owner_menu_sweep"] = {
    "task": "messaging.owner_menu_sweep",
    "schedule": 5.0,
    "options": {"expire_seconds": 25},
}

# Inbound messages per minute across all tenants; past it webhooks answer 429.
INBOUND_GLOBAL_PER_MINUTE = env.int("INBOUND_GLOBAL_PER_MINUTE", default=60000)
# Outbound messages per minute across all tenants together (0: no cap); past it sends
# wait, they are never dropped. Each tenant's own limits are in MessagingSettings.
OUTBOUND_GLOBAL_PER_MINUTE = env.int("OUTBOUND_GLOBAL_PER_MINUTE", default=60000)
# Seconds before each retry of a failed send; after the last retry it is a dead letter.
OUTBOUND_RETRY_DELAYS = env.list("OUTBOUND_RETRY_DELAYS", cast=float, default=[5, 10, 20, 40, 80])
# Where received media (images, voice notes, documents) is stored.
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / ".local" / "media")
MEDIA_URL = "/media/"

# Prometheus multiprocess files of every process on this host (config/metrics.py); the
# processes of one deployment share it, and `make run` empties it when it starts.
METRICS_DIR = env.path("METRICS_DIR", default=BASE_DIR / ".local" / "metrics")
# Celery queues whose depth /metrics reports.
METRICS_CELERY_QUEUES = env.list("METRICS_CELERY_QUEUES", default=sorted({"celery", WEBHOOK_QUEUE}))

# --- REST API (config/api/): keys, scopes, errors, rate limit, OpenAPI

API_RATE_LIMIT_PER_MINUTE = env.int("API_RATE_LIMIT_PER_MINUTE", default=600)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "config.api.auth.ApiKeyAuthentication",
        "config.api.auth.DashboardSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["config.api.permissions.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["config.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "EXCEPTION_HANDLER": "config.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "config.api.schema.ApiAutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "WhatsApp business platform API",
    "DESCRIPTION": (
        "Send WhatsApp messages, manage sessions, read conversations and orders, and manage "
        "outgoing webhooks of one business. Call it on the business's own host with "
        "`Authorization: Bearer <key>`. Every error is "
        '`{"error": {"code": "...", "message": "...", "details": {...}}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",  # Swagger UI from drf-spectacular-sidecar: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["config.api.schema.only_api_v1"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.api.schema.add_error_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "orders.models.OrderStatus",
        "SessionStatusEnum": "sessions_app.models.Status",
        "MessageStatusEnum": "messaging.models.Message.Status",
        "WebhookEventEnum": "messaging.models.WebhookEndpoint.Event",
    },
}

# --- auth, i18n, static

AUTH_USER_MODEL = "dashboard.User"
# A test run (APP_ENV=test, and tests/conftest.py for the pytest process) hashes with
# MD5 -- fast, and never anywhere else -- and every process of the run accepts it.
TEST_PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if APP_ENV == "test":
    PASSWORD_HASHERS = TEST_PASSWORD_HASHERS
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "he"
LANGUAGES = [("he", "עברית"), ("en", "English"), ("ar", "العربية")]
# The dashboard's live pages (log, board, inbox) keep their catalogue beside the app's.
LOCALE_PATHS = [BASE_DIR / "locale", BASE_DIR / "dashboard" / "live_locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"  # filled by `collectstatic` (the Docker image runs it)
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # serve straight from the apps in development and tests
warnings.filterwarnings("ignore", message="No directory at")  # whitenoise, before collectstatic

SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if PRODUCTION else None
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_REDIRECT_EXEMPT = [r"^health/$"]  # load balancers probe over plain HTTP
USE_X_FORWARDED_HOST = env.bool("USE_X_FORWARDED_HOST", default=PRODUCTION)

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default=f"noreply@{BASE_DOMAIN}")


# --- logging: every line carries the tenant schema

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# `json`: one JSON object per line (production's default); `text`: readable lines.
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if PRODUCTION else "text")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured("LOG_FORMAT must be json or text.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "tenant_context": {"()": "django_tenants.log.TenantContextFilter"},
        # A 503 from /health/ is an answer, not an error of ours: keep it out of the log.
        "skip_health": {"()": "config.health.SkipHealthRequestsFilter"},
        "redact_secrets": {"()": "config.logs.RedactSecretsFilter"},
    },
    "formatters": {
        "text": {
            "format": "%(asctime)s %(levelname)s [%(schema_name)s] %(name)s: %(message)s",
        },
        "json": {"()": "config.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["tenant_context", "redact_secrets"],
            "formatter": LOG_FORMAT,
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django.request": {
            "handlers": ["console"],
            "filters": ["skip_health"],
            "propagate": False,
        },
        "django.db.backends": {"level": "WARNING"},
        "uvicorn.access": {"level": "WARNING"},
        # The twilio SDK logs every request's URL, query and headers at INFO; httpx every
        # request's URL (webhook URLs may carry tokens): keep their warnings only.
        "twilio.http_client": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
