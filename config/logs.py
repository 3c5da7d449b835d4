"""Log lines: one JSON object per line in production, readable text in development.

Every line carries the tenant schema (django-tenants' TenantContextFilter); code adds
the ids it knows with `extra={"session_id": ..., "message_id": ..., "order_id": ...,
"event": "..."}`. The redaction filter runs on every handler: whatever a line was built
from, secrets that have a recognisable shape never reach the output. Message bodies and
PINs have no recognisable shape, so the code never logs them (a test reads every line
of an order flow to hold it to that).
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

# Ids a line may carry, in this order after the fixed fields.
CONTEXT_FIELDS = ("session_id", "message_id", "order_id", "conversation_id", "delivery_id")

_SECRET_SHAPES = [
    # Authorization headers and bearer tokens (API keys, the metrics token).
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [redacted]"),
    # key=value and "key": "value" pairs whose key names a secret.
    (
        re.compile(
            r"(?i)([\"']?\b(?:[\w-]*(?:token|secret|password|passwd|api[_-]?key)[\w-]*"
            r"|pin|pin[_-]?code|authorization)[\"']?\s*[:=]\s*[\"']?)"
            # a value with a digit, or a long one: not the word after "token:" in prose
            r"((?=[^\s\"',;&]*\d)[^\s\"',;&]{3,}|[^\s\"',;&]{16,})"
        ),
        r"\1[redacted]",
    ),
    # Our own key and secret formats, wherever they appear.
    (re.compile(r"\b(whsec|wak|sk)_[A-Za-z0-9_-]{8,}"), r"\1_[redacted]"),
    # Fernet tokens (encrypted credentials) and Twilio auth tokens (32 hex).
    (re.compile(r"\bgAAAAA[A-Za-z0-9_-]{20,}={0,2}"), "[redacted]"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "[redacted]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_SHAPES:
        text = pattern.sub(replacement, text)
    return text


class RedactSecretsFilter(logging.Filter):
    """Renders the message once, scrubbed, so no handler can print the secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken %-format: keep the template, drop the arguments
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "schema": getattr(record, "schema_name", None),
            "event": getattr(record, "event", None) or record.getMessage(),
        }
        if getattr(record, "event", None):
            line["message"] = record.getMessage()
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)
