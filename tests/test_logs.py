"""Log lines: JSON in production, with the tenant and ids, and no secret in any of them."""

import io
import json
import logging
import os
import subprocess
import sys

from django_tenants.log import TenantContextFilter
from django_tenants.utils import schema_context

from config.logs import JsonFormatter, RedactSecretsFilter
from tests.conftest import ROOT


def _capture(schema: str | None = None):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(TenantContextFilter())
    handler.addFilter(RedactSecretsFilter())
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.propagate = False
    return logger, handler, stream


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_carries_level_tenant_ids_and_event(make_tenant):
    tenant = make_tenant()
    logger, handler, stream = _capture()
    try:
        with schema_context(tenant.schema_name):
            logger.info(
                "order %s advanced",
                17,
                extra={"event": "order.advanced", "order_id": 17, "session_id": 3},
            )
    finally:
        logger.removeHandler(handler)
    (line,) = _lines(stream)
    assert line["level"] == "INFO"
    assert line["schema"] == tenant.schema_name
    assert line["event"] == "order.advanced"
    assert line["message"] == "order 17 advanced"
    assert (line["order_id"], line["session_id"]) == (17, 3)
    assert line["timestamp"].endswith("+00:00")


def test_secrets_never_reach_a_log_line():
    logger, handler, stream = _capture()
    secrets = [
        "Bearer wak_live_0123456789abcdef",
        "auth_token=0123456789abcdef0123456789abcdef",
        "password: Correct-Horse-42!",
        '{"pin": "4821"}',
        "secret whsec_Zm9vYmFyYmF6cXV4",
    ]
    try:
        for text in secrets:
            logger.warning("calling with %s", text)
        try:
            raise ValueError("token=abcdef0123456789 refused")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    for leaked in ("wak_live_0123", "0123456789abcdef0123", "Correct-Horse", "4821", "Zm9vYmFy"):
        assert leaked not in output
    assert "abcdef0123456789" not in output  # not in the traceback either
    assert output.count("[redacted]") >= len(secrets)


def test_production_logs_json_and_development_logs_text():
    script = (
        "import django, logging; django.setup(); "
        "logging.getLogger('probe').warning('hello %s', 'there')"
    )
    base = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    text = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**base, "LOG_FORMAT": "text"},
        capture_output=True,
        text=True,
    )
    assert "WARNING [public] probe: hello there" in text.stderr
    as_json = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**base, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
    )
    line = json.loads(as_json.stderr.strip().splitlines()[-1])
    assert (line["level"], line["event"], line["logger"]) == ("WARNING", "hello there", "probe")
