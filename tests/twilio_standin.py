"""A local stand-in for Twilio's REST API, for tests that run the real `twilio` SDK.

It answers the few endpoints the Twilio provider uses, like Twilio does:

- POST /2010-04-01/Accounts/{AccountSid}/Messages.json  -> 201 and a Message resource;
- GET  /2010-04-01/Accounts/{AccountSid}/Messages.json  -> 200 and a page of the account's
  messages, newest first, filtered by To, From, DateSent, DateSent< and DateSent> (which
  reads "on or after": the SDK's `DateSent>` key and `=` make Twilio's `DateSent>=`),
  PageSize (default 50, at most 1000) and Page/PageToken, with Twilio's paging fields
  (next_page_uri and the rest). The stand-in hands every message over at once, so its
  date_sent is the time it was accepted (Twilio sets it once the message leaves);
- GET  /2010-04-01/Accounts/{AccountSid}.json           -> 200 and the Account resource;
- GET  /2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}/Media/{MediaSid}
                                                         -> the media bytes (inbound media).

Every request must carry HTTP basic auth with a configured account SID and its auth
token (401 and Twilio's error 20003 otherwise). Every request is recorded (method, path,
headers, form fields, the basic-auth user and password), and the next N requests can be
told to fail with a status and a Twilio error code.

Use the `twilio_standin` fixture: it gives each test the stand-in, emptied, and points
`settings.TWILIO_API_BASE_URL` at it. One server serves the whole test session, at one
address, because child processes started once for the session (the Celery worker) must
reach it too: tests/conftest.py passes its address to them.

    from tests.twilio_standin import twilio_standin  # noqa: F401
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

API_VERSION = "2010-04-01"
_ACCOUNT = re.compile(rf"^/{API_VERSION}/Accounts/(?P<sid>AC[0-9a-fA-F]{{32}})(?P<rest>.*)$")
_MEDIA = re.compile(
    r"^/Messages/(?P<message>MM[0-9a-fA-F]{32})/Media/(?P<media>ME[0-9a-fA-F]{32})$"
)


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # as sent; use header() to look one up
    form: dict[str, list[str]]  # the form fields, each with all its values
    auth_user: str | None
    auth_password: str | None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)

    def field(self, name: str) -> str | None:
        """The (last) value of a form field, or None."""
        values = self.form.get(name)
        return values[-1] if values else None


@dataclass
class _Failure:
    status: int
    code: int | None
    message: str
    retry_after: str | None
    delay: float


@dataclass
class TwilioStandin:
    """The server. `accounts` maps account SID to auth token."""

    accounts: dict[str, str] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    _failures: deque = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # --- configuration ------------------------------------------------------------------

    def add_account(self, account_sid: str | None = None, auth_token: str | None = None):
        """Register an account; returns (sid, token), generated when not given."""
        account_sid = account_sid or new_sid("AC")
        auth_token = auth_token or uuid.uuid4().hex
        with self._lock:
            self.accounts[account_sid] = auth_token
        return account_sid, auth_token

    def add_media(self, account_sid: str, content: bytes, content_type: str) -> str:
        """Media of an inbound message; returns its URL *as Twilio gives it* (on
        api.twilio.com), which the provider reaches through TWILIO_API_BASE_URL."""
        path = (
            f"/{API_VERSION}/Accounts/{account_sid}/Messages/{new_sid('MM')}/Media/{new_sid('ME')}"
        )
        with self._lock:
            self.media[path] = (content, content_type)
        return f"https://api.twilio.com{path}"

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int,
        code: int | None = None,
        message: str = "",
        retry_after: float | str | None = None,
        delay: float = 0.0,
    ) -> None:
        """The next `count` requests answer `status` with Twilio's error JSON for `code`
        (and a Retry-After header when given), after waiting `delay` seconds."""
        failure = _Failure(
            status=status,
            code=code,
            message=message or f"Stand-in failure {code or status}",
            retry_after=None if retry_after is None else str(retry_after),
            delay=delay,
        )
        with self._lock:
            self._failures.extend([failure] * count)

    def reset(self) -> None:
        """Forget every account, request, message, media file and pending failure."""
        with self._lock:
            self.accounts.clear()
            self.requests.clear()
            self.messages.clear()
            self.media.clear()
            self._failures.clear()

    def requests_to(self, path_suffix: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith(path_suffix)]

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the stand-in is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> TwilioStandin:
        standin = self

        class Handler(_Handler):
            pass

        Handler.standin = standin
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False  # a slow answer (delay) must not hold up stop()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # --- used by the handler ------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> _Failure | None:
        with self._lock:
            self.requests.append(request)
            return self._failures.popleft() if self._failures else None


def _error_body(status: int, code: int | None, message: str) -> dict:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}" if code else None,
        "status": status,
    }


class _Handler(BaseHTTPRequestHandler):
    standin: TwilioStandin
    server_version = "TwilioStandin/1.0"

    def log_message(self, format, *args):
        pass  # quiet: tests read `standin.requests` instead

    # --- plumbing -----------------------------------------------------------------------

    def _send_json(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Twilio-Request-Id", new_sid("RQ"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, code: int | None, message: str, headers=None) -> None:
        self._send_json(status, _error_body(status, code, message), headers)

    def _basic_auth(self) -> tuple[str | None, str | None]:
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return None, None
        try:
            user, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        return user, password

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        form: dict[str, list[str]] = {}
        if "application/x-www-form-urlencoded" in self.headers.get("Content-Type", ""):
            form = parse_qs(raw.decode(), keep_blank_values=True)
        user, password = self._basic_auth()
        failure = self.standin._record(
            RecordedRequest(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers=dict(self.headers.items()),
                form=form,
                auth_user=user,
                auth_password=password,
            )
        )
        if failure is not None:
            if failure.delay:
                time.sleep(failure.delay)
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else None
            self._send_error(failure.status, failure.code, failure.message, headers)
            return
        match = _ACCOUNT.match(parts.path)
        if not match:
            self._send_error(404, 20404, f"The requested resource {parts.path} was not found")
            return
        account_sid, rest = match["sid"], match["rest"]
        with self.standin._lock:
            token = self.standin.accounts.get(account_sid)
        if user != account_sid or token is None or password != token:
            self._send_error(
                401,
                20003,
                "Authentication Error - invalid username",
                {"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
            return
        if self.command == "GET" and rest == ".json":
            self._send_json(200, self._account(account_sid, token))
        elif self.command == "POST" and rest == "/Messages.json":
            self._create_message(account_sid, form)
        elif self.command == "GET" and rest == "/Messages.json":
            self._list_messages(account_sid, parts.path, parse_qs(parts.query))
        elif self.command == "GET" and _MEDIA.match(rest):
            self._media(parts.path)
        else:
            self._send_error(404, 20404, f"The requested resource {parts.path} was not found")

    # --- resources ----------------------------------------------------------------------

    @staticmethod
    def _account(account_sid: str, token: str) -> dict:
        now = formatdate(usegmt=True)
        return {
            # Twilio's real Account resource includes the token: the provider must not leak it.
            "auth_token": token,
            "date_created": now,
            "date_updated": now,
            "friendly_name": "Stand-in account",
            "owner_account_sid": account_sid,
            "sid": account_sid,
            "status": "active",
            "subresource_uris": {
                "messages": f"/{API_VERSION}/Accounts/{account_sid}/Messages.json",
            },
            "type": "Full",
            "uri": f"/{API_VERSION}/Accounts/{account_sid}.json",
        }

    def _create_message(self, account_sid: str, form: dict[str, list[str]]) -> None:
        def first(name: str) -> str | None:
            values = form.get(name)
            return values[-1] if values else None

        to, sender, service = first("To"), first("From"), first("MessagingServiceSid")
        if not to:
            self._send_error(400, 21604, "A 'To' phone number is required.")
            return
        if not (sender or service):
            self._send_error(400, 21603, "A 'From' phone number is required.")
            return
        if not (first("Body") or form.get("MediaUrl") or first("ContentSid")):
            self._send_error(400, 21619, "A text message body or media urls must be specified.")
            return
        sid = new_sid("SM")
        now = formatdate(usegmt=True)
        body = {
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "body": first("Body") or "",
            "date_created": now,
            "date_sent": None,  # as Twilio answers a create: not sent yet
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": str(len(form.get("MediaUrl", []))),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}/Media.json"
            },
            "to": to,
            "uri": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}.json",
        }
        with self.standin._lock:  # handed over at once (see the module's docstring)
            self.standin.messages.append({**body, "date_sent": now})
        self._send_json(201, body)

    def _list_messages(self, account_sid: str, path: str, query: dict[str, list[str]]) -> None:
        def first(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        try:
            on = _filter_time(first("DateSent"))
            before = _filter_time(first("DateSent<"))
            after = _filter_time(first("DateSent>"))
            size = min(1000, max(1, int(first("PageSize") or 50)))
            page = max(0, int(first("Page") or 0))
        except ValueError as error:
            self._send_error(400, 20001, f"Invalid parameter: {error}")
            return
        to, sender = first("To"), first("From")
        with self.standin._lock:
            found = [m for m in self.standin.messages if m["account_sid"] == account_sid]
        found.reverse()  # newest first

        def wanted(message: dict) -> bool:
            if to is not None and message["to"] != to:
                return False
            if sender is not None and message["from"] != sender:
                return False
            sent = message["date_sent"] and parsedate_to_datetime(message["date_sent"])
            if on is not None and (not sent or sent.date() != on.date()):
                return False
            if before is not None and (not sent or sent > before):
                return False
            return not (after is not None and (not sent or sent < after))

        found = [m for m in found if wanted(m)]
        # PageToken is opaque at Twilio; here it is "PA" and the index of the page's first
        # message, which is also what Page and PageSize give.
        token = first("PageToken")
        start = int(token[2:]) if token and token[2:].isdigit() else page * size
        chunk = found[start : start + size]
        filters = {k: v[-1] for k, v in query.items() if k not in ("Page", "PageToken")}
        filters["PageSize"] = str(size)

        def uri(number: int) -> str:
            params = {**filters, "Page": str(number), "PageToken": f"PA{number * size}"}
            return f"{path}?{urlencode(params)}"

        number = start // size
        more = start + size < len(found)
        self._send_json(
            200,
            {
                "messages": chunk,
                "page": number,
                "page_size": size,
                "start": start,
                "end": start + max(0, len(chunk) - 1),
                "uri": uri(number),
                "first_page_uri": uri(0),
                "next_page_uri": uri(number + 1) if more else None,
                "previous_page_uri": uri(number - 1) if number > 0 else None,
            },
        )

    def _media(self, path: str) -> None:
        with self.standin._lock:
            found = self.standin.media.get(path)
        if found is None:
            self._send_error(404, 20404, f"The requested resource {path} was not found")
            return
        content, content_type = found
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = _handle
    do_POST = _handle
    do_DELETE = _handle


def _filter_time(value: str | None) -> datetime | None:
    """A DateSent filter's value: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (GMT)."""
    if not value:
        return None
    for pattern in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"{value!r} is not a date")


_shared: TwilioStandin | None = None
_shared_lock = threading.Lock()


def shared_standin() -> TwilioStandin:
    """The test session's stand-in, started on first use (at a fixed address)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = TwilioStandin().start()
        return _shared


@pytest.fixture
def twilio_standin(settings):
    """The running stand-in, emptied, with settings.TWILIO_API_BASE_URL pointing at it."""
    standin = shared_standin()
    standin.reset()
    settings.TWILIO_API_BASE_URL = standin.base_url
    try:
        yield standin
    finally:
        standin.reset()
