"""Settings from the environment: production refuses to start without its secrets."""

import io
import logging
import os
import subprocess
import sys

from cryptography.fernet import Fernet
from django.conf import settings
from django_tenants.log import TenantContextFilter
from django_tenants.utils import schema_context

from tests.conftest import ROOT


def _django_check(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_production_refuses_to_start_without_its_secrets():
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "METRICS_TOKEN"}
    }
    env["APP_ENV"] = "production"
    result = _django_check(env)
    assert result.returncode != 0
    assert "Production refuses to start without" in result.stderr
    for name in (
        "SECRET_KEY",
        "FIELD_ENCRYPTION_KEYS",
        "BASE_DOMAIN",
        "PUBLIC_URL",
        "METRICS_TOKEN",
    ):
        assert name in result.stderr


def test_production_starts_with_its_secrets_and_turns_debug_off():
    env = {
        **os.environ,
        "APP_ENV": "production",
        "SECRET_KEY": "x" * 50,
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "BASE_DOMAIN": "wa.example.com",
        "PUBLIC_URL": "https://wa.example.com",
        "METRICS_TOKEN": "m" * 32,
    }
    result = subprocess.run(
        [sys.executable, "-c",
         "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings');"
         "django.setup(); from django.conf import settings as s;"
         "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.ALLOWED_HOSTS)"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False True ['wa.example.com', '.wa.example.com']"


def test_production_refuses_development_secrets_and_debug():
    env = {
        **os.environ,
        "APP_ENV": "production",
        "SECRET_KEY": "dev-only-insecure-secret-key-change-me-0123456789",
        "FIELD_ENCRYPTION_KEYS": "not-a-fernet-key",
        "BASE_DOMAIN": "wa.example.com",
        "PUBLIC_URL": "https://wa.example.com",
        "DEBUG": "true",
        "METRICS_TOKEN": "dev-metrics-token",
    }
    result = _django_check(env)
    assert result.returncode != 0
    for problem in ("SECRET_KEY must be", "Fernet key", "DEBUG must be off", "METRICS_TOKEN must"):
        assert problem in result.stderr


def test_development_has_safe_defaults_without_any_variable():
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "APP_ENV"}}
    result = subprocess.run(
        [sys.executable, "-c",
         "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings');"
         "django.setup(); from django.conf import settings as s;"
         "print(s.DATABASES['default']['PORT'], s.REDIS_URL)"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    from config.embedded import EMBEDDED_REDIS_URL, PG_PORT

    assert result.stdout.split() == [str(PG_PORT), EMBEDDED_REDIS_URL]


def test_log_lines_carry_the_tenant_schema(make_tenant):
    tenant = make_tenant()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(settings.LOGGING["formatters"]["text"]["format"]))
    handler.addFilter(TenantContextFilter())
    logger = logging.getLogger("tests.schema")
    logger.addHandler(handler)
    try:
        with schema_context(tenant.schema_name):
            logger.warning("inside the tenant")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert f"[{tenant.schema_name}]" in lines[0]
    assert "[public]" in lines[1]
