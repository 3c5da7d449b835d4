"""Twilio: the official WhatsApp Business API, through the real `twilio` SDK.

Each session sends with its own account SID and auth token (`WhatsAppSession.twilio_*`).
There is no live connection: `send()` is one HTTPS request to Twilio's Messages API, and
what customers write arrives at the webhook, which normalises it with
`twilio_inbound_parse` and delivery reports with `twilio_status_parse`.

The auth token never appears in an exception message, a repr or a log line: the SDK's
request log goes through a logger that masks it, every message we build is masked too,
and the token is held as a `Secret` (whose repr hides it).

`settings.TWILIO_API_BASE_URL` (empty: Twilio's real API) points the SDK elsewhere, e.g.
at the stand-in of the tests: the SDK still builds every request (form fields, basic
auth, headers) and only the scheme and host of `*.twilio.com` URLs are swapped just
before the request leaves.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ImproperlyConfigured, ValidationError
from django.utils import timezone
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from sessions_app.fields import Secret
from sessions_app.models import Provider as ProviderChoice
from sessions_app.phone_numbers import to_e164
from sessions_app.providers.base import (
    MEDIA_KINDS,
    Capabilities,
    InboundMessage,
    Location,
    Media,
    MessageKind,
    NeverRetry,
    OutboundMessage,
    Provider,
    ProviderError,
    RateLimited,
    RetryLater,
    SendResult,
)

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 15.0
STATUS_CALLBACK_PATH = "/webhooks/twilio/status/"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
MASK = "********"

# The idempotency token of the send in progress (per thread and per task): set around
# `messages.create`, added as a header by the HTTP client. The SDK's `create()` takes no
# headers, so its HttpClient -- the extension point the SDK offers -- adds it.
_idempotency_token: ContextVar[str] = ContextVar("twilio_idempotency_token", default="")

# --- errors ---------------------------------------------------------------------------

RATE_LIMIT_CODES = frozenset({20429, 63018})
# 4xx that no retry can fix; any other 4xx is treated the same way, these get a clear text.
EXPLANATIONS: dict[int, str] = {
    20003: "Twilio rejected this session's account SID and auth token: check them in the "
    "session's settings",
    20404: "Twilio has no such resource for this account (check the account SID)",
    20429: "Twilio is rate limiting this account",
    21211: "the recipient is not a valid phone number",
    21408: "this account may not send to the recipient's country (Twilio geo permissions)",
    21602: "the message has no body",
    21606: "the sender number is not a WhatsApp-enabled Twilio number of this account",
    21610: "the recipient has unsubscribed from this sender (replied STOP)",
    21617: "the message body is too long",
    21620: "the media URL is not valid or not reachable by Twilio",
    21655: "the content template SID is not valid",
    21656: "the content template variables are not valid",
    63003: "the recipient cannot be reached on WhatsApp",
    63007: "Twilio has no WhatsApp sender for the session's sender number",
    63016: "the customer's 24-hour WhatsApp window is closed: only an approved content "
    "template can be sent now",
    63018: "Twilio is rate limiting this WhatsApp sender",
}


def _twilio_code(code) -> int | None:
    """Twilio's own error code (5 digits); the SDK puts the HTTP status there when the
    answer carried none."""
    try:
        value = int(code)
    except (TypeError, ValueError):
        return None
    return value if value >= 10000 else None


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def _secrets_of(account_sid: str, auth_token: str) -> tuple[str, ...]:
    """The token and the Basic credentials made from it, as they could appear in text."""
    if not auth_token:
        return ()
    basic = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
    return (str(auth_token), basic)


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds, from either of its forms (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _provider_error(
    *,
    status: int | None,
    code: int | None,
    detail: str,
    retry_after: float | None = None,
    secrets: tuple[str, ...] = (),
) -> ProviderError:
    """The error the caller acts on, carrying Twilio's code (`.code`) and HTTP `.status`."""
    label = f"Twilio error {code}" if code else f"Twilio answered HTTP {status}"
    explanation = EXPLANATIONS.get(code or 0)
    detail = _redact((detail or "").strip(), secrets)
    if explanation:
        text = f"{label}: {explanation}" + (f" ({detail})" if detail else "")
    else:
        text = f"{label}: {detail or 'no details given'}"
    if status == 429 or code in RATE_LIMIT_CODES:
        error: ProviderError = RateLimited(text, retry_after=retry_after)
    elif code in EXPLANATIONS:
        error = NeverRetry(text)
    elif status is None or status >= 500 or status in (408, 409):
        error = RetryLater(text, retry_after=retry_after)
    elif 400 <= status < 500:
        error = NeverRetry(text)
    else:
        error = RetryLater(text, retry_after=retry_after)
    error.code = code
    error.status = status
    return error


def _with_code(error: ProviderError, code: int | None = None) -> ProviderError:
    error.code = code
    error.status = None
    return error


# --- the SDK's HTTP client, pointed where settings say --------------------------------


class _RedactingLogger(logging.LoggerAdapter):
    """What the SDK logs (URLs, headers), with the session's secrets masked."""

    def __init__(self, target: logging.Logger, secrets: tuple[str, ...]):
        super().__init__(target, {})
        self._secrets = secrets

    def log(self, level, msg, *args, **kwargs):
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join([str(msg), *map(str, args)])
        self.logger.log(level, _redact(text, self._secrets), **kwargs)


def _base_url() -> str:
    base = (getattr(settings, "TWILIO_API_BASE_URL", "") or "").strip().rstrip("/")
    if base:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ImproperlyConfigured(
                f"TWILIO_API_BASE_URL must be an absolute http(s) URL, not {base!r}."
            )
    return base


def _is_twilio_host(host: str) -> bool:
    host = (host or "").lower()
    return host == "twilio.com" or host.endswith(".twilio.com")


def _idempotency_value(key: str) -> str:
    """The key as a header value: as is when it is a short printable ASCII token, else
    its digest (the same key always gives the same value)."""
    if not key:
        return ""
    if re.fullmatch(r"[\x21-\x7e]{1,64}", key):
        return key
    return hashlib.sha256(key.encode()).hexdigest()


class _EnvironmentOnceSession(requests.Session):
    """A requests Session that reads the environment's proxy and CA settings
    (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE...) once per scheme and host, not for every
    request: requests walks the whole of os.environ twice a request to find them, a
    noticeable part of a busy sender's CPU. The environment does not change while a
    process runs."""

    def __init__(self):
        super().__init__()
        self._environment_settings: dict[tuple, dict] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, repr(proxies), stream, verify, cert)
        merged = self._environment_settings.get(key)
        if merged is None:
            merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
            self._environment_settings[key] = merged
        return {**merged, "proxies": dict(merged["proxies"])}


class TwilioApiHttpClient(TwilioHttpClient):
    """The SDK's own HTTP client (requests), with four additions:

    - with a base URL, requests for `*.twilio.com` go to it instead (scheme, host and an
      optional path prefix are swapped; the path, form, auth and headers are the SDK's);
    - the idempotency token of the send in progress travels as a header;
    - the last answer's headers are kept per thread (the SDK's exceptions drop them, and
      a 429's Retry-After is in them);
    - the environment's proxy settings are read once per host (`_EnvironmentOnceSession`).
    """

    def __init__(self, *, base_url: str = "", secrets: tuple[str, ...] = (), timeout: float):
        super().__init__(
            timeout=timeout,
            logger=_RedactingLogger(logging.getLogger("twilio.http_client"), secrets),
        )
        self.session = _EnvironmentOnceSession()  # mounted as the SDK mounts its own
        pool_size = min(32, (os.cpu_count() or 1) + 4)
        self.session.mount("https://", requests.adapters.HTTPAdapter(pool_maxsize=pool_size))
        self.base_url = base_url
        self._base = urlsplit(base_url) if base_url else None
        self._last = threading.local()

    def rewrite(self, url: str) -> str:
        if self._base is None:
            return url
        parts = urlsplit(url)
        if not _is_twilio_host(parts.hostname or ""):
            return url
        path = self._base.path.rstrip("/") + parts.path
        return urlunsplit((self._base.scheme, self._base.netloc, path, parts.query, ""))

    def is_twilio_url(self, url: str) -> bool:
        """A URL it is safe to send the session's credentials to."""
        parts = urlsplit(url)
        if parts.scheme == "https" and _is_twilio_host(parts.hostname or ""):
            return True
        return self._base is not None and (parts.scheme, parts.netloc) == (
            self._base.scheme,
            self._base.netloc,
        )

    def last_retry_after(self) -> float | None:
        headers = getattr(self._last, "headers", None) or {}
        return _retry_after_seconds(headers.get("Retry-After"))

    def request(
        self,
        method,
        url,
        params=None,
        data=None,
        headers=None,
        auth=None,
        timeout=None,
        allow_redirects=False,
    ) -> TwilioResponse:
        self._last.headers = None
        headers = dict(headers or {})
        token = _idempotency_token.get()
        if token and method.upper() == "POST":
            headers[IDEMPOTENCY_HEADER] = token
        response = super().request(
            method,
            self.rewrite(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        self._last.headers = response.headers
        return response

    def get_bytes(self, url: str, *, auth: tuple[str, str]) -> requests.Response:
        """GET raw bytes (the SDK's Response keeps only text). Redirects are followed;
        requests drops the credentials when a redirect leaves the host."""
        target = self.rewrite(url)
        self.logger.info("GET media %s", target)
        session = self.session or requests.Session()
        response = session.get(
            target,
            auth=auth,
            timeout=self.timeout,
            allow_redirects=True,
            headers={"Accept": "*/*", "User-Agent": "whatsapp-platform (twilio media)"},
        )
        self.logger.info("Media response status code: %s", response.status_code)
        self._last.headers = response.headers
        return response


def _transport_error(error: Exception, *, timeout: float, secrets: tuple[str, ...]):
    """A ProviderError for an exception raised before Twilio answered, or None."""
    if isinstance(error, requests.Timeout):
        return _with_code(RetryLater(f"Twilio did not answer within {timeout:g} seconds."))
    if isinstance(error, requests.ConnectionError):
        return _with_code(
            RetryLater(_redact(f"Could not connect to Twilio: {type(error).__name__}.", secrets))
        )
    if isinstance(error, requests.RequestException):
        return _with_code(
            RetryLater(_redact(f"The request to Twilio failed: {type(error).__name__}.", secrets))
        )
    return None


def _sdk_error(
    error: Exception, *, http: TwilioApiHttpClient, secrets: tuple[str, ...], timeout: float
) -> ProviderError:
    if isinstance(error, TwilioRestException):
        return _provider_error(
            status=int(error.status),
            code=_twilio_code(error.code),
            detail=str(error.msg or ""),
            retry_after=http.last_retry_after(),
            secrets=secrets,
        )
    if isinstance(error, TwilioServiceException):
        detail = f"{error.title}: {error.detail}" if error.detail else str(error.title)
        return _provider_error(
            status=int(error.status),
            code=_twilio_code(error.code),
            detail=detail,
            retry_after=http.last_retry_after(),
            secrets=secrets,
        )
    transport = _transport_error(error, timeout=timeout, secrets=secrets)
    if transport is not None:
        return transport
    return _with_code(
        NeverRetry(_redact(f"The Twilio SDK refused the request: {type(error).__name__}.", secrets))
    )


_CAUGHT = (TwilioException, requests.RequestException)


def _page_error(error: Exception, secrets: tuple[str, ...]) -> ProviderError | None:
    """A list page Twilio refused: the SDK raises a bare TwilioException("Unable to fetch
    page", response) for it."""
    if type(error) is not TwilioException or len(error.args) < 2:
        return None
    response = error.args[1]
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        return None
    code, detail = None, ""
    try:
        body = json.loads(response.text or "{}")
        code, detail = _twilio_code(body.get("code")), str(body.get("message") or "")
    except (ValueError, AttributeError):
        pass
    headers = getattr(response, "headers", None) or {}
    return _provider_error(
        status=status,
        code=code,
        detail=detail or "Unable to fetch page",
        retry_after=_retry_after_seconds(headers.get("Retry-After")),
        secrets=secrets,
    )


def twilio_status_callback_url() -> str:
    return settings.PUBLIC_URL.rstrip("/") + STATUS_CALLBACK_PATH


# --- the provider ---------------------------------------------------------------------


class TwilioProvider(Provider):
    """Sends for one Twilio session, with that session's own credentials."""

    # Buttons and lists only exist inside approved content templates.
    capabilities = Capabilities(templates=True)

    def __init__(self, session, *, timeout: float = DEFAULT_TIMEOUT_SECONDS):
        if session.provider != ProviderChoice.TWILIO:
            raise _with_code(NeverRetry(f"Session {session.pk} is not a Twilio session."))
        account_sid = (session.twilio_account_sid or "").strip()
        auth_token = session.twilio_auth_token or ""
        if not account_sid or not auth_token:
            raise _with_code(
                NeverRetry(
                    f"Twilio session {session.pk} has no account SID or auth token: "
                    "set them in the session's settings."
                )
            )
        self.session_id = session.pk
        self.account_sid = account_sid
        self.from_number = (session.twilio_from_number or "").strip()
        self.messaging_service_sid = (session.twilio_messaging_service_sid or "").strip()
        self.timeout = timeout
        self._auth_token = Secret(str(auth_token))
        self._secrets = _secrets_of(account_sid, self._auth_token)
        self._http = TwilioApiHttpClient(
            base_url=_base_url(), secrets=self._secrets, timeout=timeout
        )
        self._client = Client(
            username=account_sid,
            password=self._auth_token,
            account_sid=account_sid,
            http_client=self._http,
        )

    def __repr__(self) -> str:
        return f"<TwilioProvider session={self.session_id} account={self.account_sid}>"

    # --- sending ------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        params = self._create_params(message)
        token = _idempotency_token.set(_idempotency_value(message.idempotency_key))
        try:
            created = self._client.messages.create(**params)
        except _CAUGHT as error:
            problem = _sdk_error(
                error, http=self._http, secrets=self._secrets, timeout=self.timeout
            )
            logger.warning(
                "twilio session %s: send failed (%s, code %s): %s",
                self.session_id,
                type(problem).__name__,
                problem.code,
                problem,
            )
            raise problem from error
        finally:
            _idempotency_token.reset(token)
        logger.info("twilio session %s: sent %s as %s", self.session_id, message.kind, created.sid)
        return SendResult(provider_message_id=created.sid)

    def sent_matching(
        self, message: OutboundMessage, *, since: datetime, limit: int = 200
    ) -> list[str]:
        """The SIDs of the messages Twilio accepted from this session's sender to the
        message's recipient, sent at or after `since`, that look like `message` (the same
        body; a content template's body is Twilio's rendering, so any body) -- oldest
        first. Asked before sending again a message whose earlier attempt may have been
        accepted without anyone hearing the answer (messaging/send_marks.py).

        Through the SDK's message list: To, From and DateSent>= filter at Twilio, paged
        (at most `limit` messages looked at, newest first). A message Twilio still holds
        in its queue has no DateSent yet and is not listed. ProviderError (RetryLater or
        NeverRetry) when Twilio cannot be asked."""
        params = self._create_params(message)
        filters: dict = {"to": params["to"], "date_sent_after": since}
        if "from_" in params:
            filters["from_"] = params["from_"]
        body = params.get("body")
        found = []
        try:
            for item in self._client.messages.stream(**filters, limit=limit, page_size=50):
                if item.direction and not str(item.direction).startswith("outbound"):
                    continue
                if body is not None and "content_sid" not in params and item.body != body:
                    continue
                if "from_" not in params and item.messaging_service_sid != (
                    self.messaging_service_sid
                ):
                    continue
                found.append(item.sid)
        except _CAUGHT as error:
            problem = _page_error(error, self._secrets) or _sdk_error(
                error, http=self._http, secrets=self._secrets, timeout=self.timeout
            )
            logger.warning(
                "twilio session %s: message list failed (%s, code %s): %s",
                self.session_id,
                type(problem).__name__,
                problem.code,
                problem,
            )
            raise problem from error
        found.reverse()
        return found

    def _create_params(self, message: OutboundMessage) -> dict:
        if not (self.from_number or self.messaging_service_sid):
            raise _with_code(
                NeverRetry(
                    f"Twilio session {self.session_id} has neither a sender number nor a "
                    "messaging service SID."
                )
            )
        params: dict = {
            "to": f"whatsapp:{self._recipient(message.to)}",
            "status_callback": twilio_status_callback_url(),
        }
        if self.from_number:
            params["from_"] = f"whatsapp:{self.from_number}"
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        # Twilio has no quoted replies: reply_to_id is not sent.
        if message.template_sid:
            params["content_sid"] = message.template_sid
            if message.template_variables:
                params["content_variables"] = json.dumps(
                    {str(k): str(v) for k, v in message.template_variables.items()},
                    ensure_ascii=False,
                )
            return params
        try:
            kind = MessageKind(message.kind)
        except ValueError:
            raise _with_code(NeverRetry(f"Unknown message kind {message.kind!r}.")) from None
        if kind == MessageKind.TEXT:
            if not message.text.strip():
                raise _with_code(NeverRetry("A text message needs some text."))
            params["body"] = message.text
        elif kind in MEDIA_KINDS:
            if not message.media_url:
                raise _with_code(
                    NeverRetry(
                        "Twilio sends media from a public URL only; this message has "
                        "bytes and no media_url."
                    )
                )
            if urlsplit(message.media_url).scheme not in ("http", "https"):
                raise _with_code(NeverRetry("The media URL must be an http(s) URL."))
            params["media_url"] = [message.media_url]
            if message.text:
                params["body"] = message.text  # the caption
        elif kind == MessageKind.LOCATION:
            location = message.location
            if location is None:
                raise _with_code(NeverRetry("A location message needs a location."))
            label = (location.name or location.address).replace("|", " ").strip()
            geo = f"geo:{location.latitude},{location.longitude}"
            params["persistent_action"] = [f"{geo}|{label}" if label else geo]
            params["body"] = (
                message.text
                or location.address
                or location.name
                or f"{location.latitude}, {location.longitude}"
            )
        else:
            raise _with_code(
                NeverRetry(
                    f"Twilio cannot send {kind} messages on WhatsApp "
                    "(text, media by URL, location and content templates only)."
                )
            )
        return params

    @staticmethod
    def _recipient(to: str) -> str:
        if not to or "@" in to or not to.lstrip().startswith("+"):
            raise _with_code(
                NeverRetry(
                    f"Twilio sends to phone numbers in E.164 only (+ and country code), "
                    f"not {to!r}; WhatsApp groups are not supported."
                )
            )
        try:
            return to_e164(to)
        except ValidationError:
            raise _with_code(NeverRetry(f"{to!r} is not a phone number.")) from None

    # --- media of inbound messages ------------------------------------------------------

    def media_download(self, url: str) -> bytes:
        """The bytes of an inbound message's media, fetched with this session's
        credentials -- which only ever go to Twilio (or the configured base URL)."""
        if not self._http.is_twilio_url(url):
            raise _with_code(
                NeverRetry(f"Refusing to send Twilio credentials to {urlsplit(url).netloc!r}.")
            )
        try:
            response = self._http.get_bytes(url, auth=(self.account_sid, self._auth_token))
        except requests.RequestException as error:
            raise _transport_error(error, timeout=self.timeout, secrets=self._secrets) from error
        if response.status_code >= 400:
            code, detail = None, ""
            try:
                payload = response.json()
                code = _twilio_code(payload.get("code"))
                detail = str(payload.get("message") or "")
            except (ValueError, AttributeError):
                pass
            raise _provider_error(
                status=response.status_code,
                code=code,
                detail=detail or "could not download the media",
                retry_after=_retry_after_seconds(response.headers.get("Retry-After")),
                secrets=self._secrets,
            )
        return response.content


# --- checking credentials before saving a session -------------------------------------


def twilio_credentials_check(*, account_sid: str, auth_token: str) -> None:
    """Ask Twilio for the account with these credentials; ValidationError (by field) if
    Twilio rejects them, the account is not active, or Twilio cannot be asked."""
    account_sid = (account_sid or "").strip()
    auth_token = Secret((auth_token or "").strip())
    errors: dict[str, list[str]] = {}
    if not re.fullmatch(r"AC[0-9a-fA-F]{32}", account_sid):
        errors["twilio_account_sid"] = ["An account SID starts with AC and has 34 characters."]
    if not auth_token:
        errors["twilio_auth_token"] = ["The auth token is required."]
    if errors:
        raise ValidationError(errors)
    secrets = _secrets_of(account_sid, auth_token)
    http = TwilioApiHttpClient(
        base_url=_base_url(), secrets=secrets, timeout=DEFAULT_TIMEOUT_SECONDS
    )
    client = Client(
        username=account_sid, password=auth_token, account_sid=account_sid, http_client=http
    )
    try:
        account = client.api.v2010.accounts(account_sid).fetch()
    except _CAUGHT as error:
        problem = _sdk_error(error, http=http, secrets=secrets, timeout=DEFAULT_TIMEOUT_SECONDS)
        logger.info("twilio credentials check for %s failed: %s", account_sid, problem)
        status = getattr(problem, "status", None)
        if status == 401 or problem.code == 20003:
            raise ValidationError(
                {
                    "twilio_auth_token": [
                        "Twilio did not accept this account SID and auth token (error 20003). "
                        "Copy both again from the Twilio console."
                    ]
                }
            ) from None
        if status == 404:
            raise ValidationError(
                {"twilio_account_sid": ["Twilio has no account with this SID."]}
            ) from None
        raise ValidationError(
            {NON_FIELD_ERRORS: [f"The credentials could not be checked with Twilio: {problem}"]}
        ) from None
    if account.status and account.status != "active":
        raise ValidationError(
            {
                "twilio_account_sid": [
                    f"This Twilio account is {account.status}: only an active account can send."
                ]
            }
        )


# --- webhooks: inbound messages and delivery reports ----------------------------------


def _form_value(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else ""
    return str(value).strip()


def _form_phone(value: str, field: str) -> str:
    try:
        return to_e164(value)
    except ValidationError:
        raise ValueError(
            f"The Twilio webhook's {field} is not a phone number: {value!r}."
        ) from None


def _form_float(value: str, field: str, limit: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"The Twilio webhook's {field} is not a number: {value!r}.") from None
    if not math.isfinite(number) or abs(number) > limit:
        raise ValueError(f"The Twilio webhook's {field} is out of range: {value!r}.")
    return number


def _media_kind(content_type: str) -> MessageKind:
    main = content_type.split(";", 1)[0].strip().lower()
    if main == "image/webp":  # how WhatsApp stickers arrive
        return MessageKind.STICKER
    for prefix, kind in (
        ("image/", MessageKind.IMAGE),
        ("video/", MessageKind.VIDEO),
        ("audio/", MessageKind.AUDIO),
    ):
        if main.startswith(prefix):
            return kind
    return MessageKind.DOCUMENT


def _downloader(session, url: str) -> Callable[[], bytes]:
    def download() -> bytes:
        return TwilioProvider(session).media_download(url)

    return download


def twilio_inbound_parse(form: Mapping[str, str], *, session) -> InboundMessage:
    """An InboundMessage from the fields of Twilio's WhatsApp webhook; ValueError (with a
    clear message) for anything that is not one."""
    if not isinstance(form, Mapping) and not hasattr(form, "get"):
        raise ValueError("The Twilio webhook's fields must be a mapping.")
    try:
        message_sid = _form_value(form, "MessageSid")
        raw_from = _form_value(form, "From")
    except Exception as error:  # a mapping that cannot be read: still only ValueError
        raise ValueError(f"The Twilio webhook's fields cannot be read: {error}") from None
    if not message_sid:
        raise ValueError("The Twilio webhook has no MessageSid.")
    if not raw_from:
        raise ValueError("The Twilio webhook has no From.")
    sender = _form_phone(raw_from, "From")
    body = _form_value(form, "Body")
    fields: dict = {}
    raw_count = _form_value(form, "NumMedia") or "0"
    try:
        media_count = int(raw_count)
    except ValueError:
        raise ValueError(f"The Twilio webhook's NumMedia is not a number: {raw_count!r}.") from None
    latitude, longitude = _form_value(form, "Latitude"), _form_value(form, "Longitude")
    if media_count > 0:
        url = _form_value(form, "MediaUrl0")
        if not url or urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("The Twilio webhook announces media but has no valid MediaUrl0.")
        content_type = _form_value(form, "MediaContentType0") or "application/octet-stream"
        kind = _media_kind(content_type)
        fields["media"] = Media(
            mime_type=content_type, caption=body, url=url, download=_downloader(session, url)
        )
    elif latitude or longitude:
        if not (latitude and longitude):
            raise ValueError("The Twilio webhook has only one of Latitude and Longitude.")
        kind = MessageKind.LOCATION
        fields["location"] = Location(
            latitude=_form_float(latitude, "Latitude", 90),
            longitude=_form_float(longitude, "Longitude", 180),
            name=_form_value(form, "Label"),
            address=_form_value(form, "Address"),
        )
    elif body:
        kind = MessageKind.TEXT
    else:
        kind = MessageKind.UNSUPPORTED
    return InboundMessage(
        provider_message_id=message_sid,
        chat=sender,
        sender=sender,
        timestamp=timezone.now(),  # Twilio's webhook carries no time
        kind=kind,
        push_name=_form_value(form, "ProfileName"),
        text=body,
        reply_to_id=_form_value(form, "OriginalRepliedMessageSid"),
        **fields,
    )


STATUSES = ("queued", "sent", "delivered", "read", "failed", "undelivered")
# Twilio's other statuses, folded into the six the product tracks.
_STATUS_ALIASES = {
    "accepted": "queued",
    "scheduled": "queued",
    "sending": "queued",
    "canceled": "failed",
}


@dataclass(frozen=True)
class TwilioStatus:
    message_sid: str
    status: str  # one of STATUSES
    error_code: int | None = None


def twilio_status_parse(form: Mapping[str, str]) -> TwilioStatus:
    """A delivery report from Twilio's status callback; ValueError if it is not one."""
    if not isinstance(form, Mapping) and not hasattr(form, "get"):
        raise ValueError("The Twilio status callback's fields must be a mapping.")
    try:
        message_sid = _form_value(form, "MessageSid") or _form_value(form, "SmsSid")
        raw_status = (_form_value(form, "MessageStatus") or _form_value(form, "SmsStatus")).lower()
        raw_code = _form_value(form, "ErrorCode")
    except Exception as error:
        raise ValueError(f"The Twilio status callback cannot be read: {error}") from None
    if not message_sid:
        raise ValueError("The Twilio status callback has no MessageSid.")
    status = _STATUS_ALIASES.get(raw_status, raw_status)
    if status not in STATUSES:
        raise ValueError(
            f"The Twilio status callback has an unknown MessageStatus: {raw_status!r}."
        )
    error_code = None
    if raw_code:
        try:
            error_code = int(raw_code)
        except ValueError:
            raise ValueError(
                f"The Twilio status callback's ErrorCode is not a number: {raw_code!r}."
            ) from None
        error_code = error_code or None
    return TwilioStatus(message_sid=message_sid, status=status, error_code=error_code)
