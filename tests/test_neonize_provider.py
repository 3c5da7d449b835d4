"""The neonize provider with real neonize objects: neonize's own event types go through
neonize's real dispatch path (the ctypes callbacks the Go library calls), so handler
registration and neonize's weak references are exercised too. Only the network seam is
replaced: a client's handle on the Go library (`client._NewClient__client`) by FakeGo,
which records calls and answers with serialised neonize protobufs. connect() itself runs
for real: offline, the Go library fails to dial at once. Nothing here needs WhatsApp's
servers, and the device store is a throwaway PostgreSQL database on the test server."""

from __future__ import annotations

import ctypes
import gc
import io
import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from neonize._binder import func_callback_bytes, func_string
from neonize.events import (
    EVENT_TO_INT,
    ChatPresenceEv,
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    DisconnectedEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    ReceiptEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.exc import NeonizeError
from neonize.proto.Neonize_pb2 import (
    JID,
    ConnectFailureReason,
    DownloadReturnFunction,
    PairPhoneParams,
    PairPhoneReturnFunction,
    SendMessageReturnFunction,
    SendResponse,
    UploadResponse,
    UploadReturnFunction,
)
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message
from PIL import Image

from sessions_app.providers import neonize_provider as nz
from sessions_app.providers.base import (
    ContactCard,
    DisconnectKind,
    Location,
    MessageKind,
    NeverRetry,
    OutboundMessage,
    PresenceState,
    RateLimited,
    Reaction,
    ReceiptKind,
    RetryLater,
    SessionConfig,
)

CUSTOMER = "972501234567"
BUSINESS = "972541112233"
BUSINESS_DEVICE = f"{BUSINESS}:12@s.whatsapp.net"
GROUP = "120363041234567890@g.us"
WAIT = 5.0


# --- helpers: neonize protobufs, the events sink, the Go seam ---------------------------


def complete(message):
    """Set every proto2 required field neonize's events leave unset (to their defaults),
    as the Go side always fills them: only then do they serialise."""
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated:
            if field.message_type is not None:
                for item in getattr(message, field.name):
                    complete(item)
        elif field.message_type is not None:
            if field.is_required or message.HasField(field.name):
                part = getattr(message, field.name)
                part.SetInParent()
                complete(part)
        elif field.is_required and not message.HasField(field.name):
            setattr(message, field.name, field.default_value)
    return message


def user_jid(user: str, server: str = "s.whatsapp.net", device: int = 0) -> JID:
    return JID(User=user, RawAgent=0, Device=device, Integrator=0, Server=server, IsEmpty=False)


def feed(client, ev) -> None:
    """Deliver an event the way the Go library does: through the ctypes callback that
    neonize hands it, into the client's Event.execute and its registered handler."""
    data = complete(ev).SerializeToString()
    buffer = ctypes.create_string_buffer(data, len(data))
    callback = func_callback_bytes(client.event.execute)
    callback(client.uuid, ctypes.addressof(buffer), len(data), EVENT_TO_INT[type(ev)])


def _string_callback(function, text: bytes) -> None:
    """Call a neonize string callback (QR codes, login status) as the Go library does."""
    uuid_buffer = ctypes.create_string_buffer(b"uuid")
    text_buffer = ctypes.create_string_buffer(text)
    func_string(function)(ctypes.addressof(uuid_buffer), ctypes.addressof(text_buffer))


def feed_qr(client, code: bytes) -> None:
    _string_callback(client._NewClient__onQr, code)


def feed_login_status(client, status: str) -> None:
    _string_callback(client._NewClient__onLoginStatus, status.encode())


class RecordingEvents:
    """A ConnectionEvents sink that records what a connection reports."""

    def __init__(self):
        self.calls: list[tuple[str, object]] = []
        self._changed = threading.Condition()

    def _record(self, name: str, value) -> None:
        with self._changed:
            self.calls.append((name, value))
            self._changed.notify_all()

    def qr(self, payload, expires_at):
        self._record("qr", {"payload": payload, "expires_at": expires_at})

    def paired(self, *, phone_number, device_jid):
        self._record("paired", {"phone_number": phone_number, "device_jid": device_jid})

    def connected(self, *, phone_number):
        self._record("connected", {"phone_number": phone_number})

    def disconnected(self, *, kind, reason, banned_until=None):
        self._record("disconnected", {"kind": kind, "reason": reason, "banned_until": banned_until})

    def message(self, message):
        self._record("message", message)

    def receipt(self, receipt):
        self._record("receipt", receipt)

    def presence(self, presence):
        self._record("presence", presence)

    def of(self, name: str) -> list:
        with self._changed:
            return [value for kind, value in self.calls if kind == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = WAIT) -> list:
        with self._changed:
            self._changed.wait_for(lambda: len(self.of(name)) >= count, timeout)
        found = self.of(name)
        assert len(found) >= count, f"waited for {count} {name!r}; got calls {self.calls}"
        return found


class FakeGo:
    """Stands in for neonize's handle on the Go library, for one client: records each
    call (decoding the protobufs neonize built) and answers with neonize's own
    serialised return types. Anything else is a call the test did not expect."""

    def __init__(self):
        self.calls: list[tuple[str, object]] = []
        self.sent: list[tuple[JID, Message]] = []
        self.send_error = ""
        self.sent_ids: list[str] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def SendMessage(self, uuid, to, to_size, message, message_size):
        jid, built = JID.FromString(to[:to_size]), Message.FromString(message[:message_size])
        self.calls.append(("SendMessage", (jid, built)))
        if self.send_error:
            return SendMessageReturnFunction(Error=self.send_error).SerializeToString()
        self.sent.append((jid, built))
        message_id = f"3EB0{uuid_hex(16)}"
        self.sent_ids.append(message_id)
        response = SendResponse(ID=message_id, Timestamp=int(time.time()), ServerID=0)
        return complete(SendMessageReturnFunction(SendResponse=response)).SerializeToString()

    def Upload(self, uuid, data, size, media_type):
        self.calls.append(("Upload", (bytes(data[:size]), media_type)))
        upload = UploadResponse(
            url="https://mmg.whatsapp.net/fake",
            DirectPath="/v/fake",
            MediaKey=b"k" * 32,
            FileEncSHA256=b"e" * 32,
            FileSHA256=b"s" * 32,
            FileLength=size,
        )
        return complete(UploadReturnFunction(UploadResponse=upload)).SerializeToString()

    def DownloadAny(self, uuid, message, size):
        self.calls.append(("DownloadAny", Message.FromString(message[:size])))
        return DownloadReturnFunction(Binary=b"\x89PNG fake image bytes").SerializeToString()

    def MarkRead(self, uuid, ids, timestamp, chat, chat_size, sender, sender_size, receipt):
        decoded = {
            "ids": ids.decode().split(" "),
            "chat": JID.FromString(chat[:chat_size]),
            "sender": JID.FromString(sender[:sender_size]),
            "receipt": receipt,
        }
        self.calls.append(("MarkRead", decoded))
        return b""

    def SendChatPresence(self, uuid, jid, jid_size, state, media):
        self.calls.append(("SendChatPresence", (JID.FromString(jid[:jid_size]), state, media)))
        return b""

    def PairPhone(self, uuid, payload, size):
        self.calls.append(("PairPhone", PairPhoneParams.FromString(payload[:size])))
        return PairPhoneReturnFunction(Code="ABCD-EFGH").SerializeToString()

    def Logout(self, uuid):
        self.calls.append(("Logout", uuid))
        return b""

    def Stop(self, uuid):
        self.calls.append(("Stop", uuid))
        return b""

    def __getattr__(self, name):
        raise AssertionError(f"unexpected call into neonize's Go library: {name}")


def uuid_hex(length: int) -> str:
    return uuid.uuid4().hex[:length].upper()


def make_connection(store: str, *, device_jid: str = "", proxy_url: str = "", default_proxy=""):
    events = RecordingEvents()
    config = SessionConfig(
        session_id=7,
        public_id=str(uuid.uuid4()),
        schema_name="t_test",
        device_jid=device_jid,
        proxy_url=proxy_url,
    )
    connection = nz.NeonizeConnection(config, events, store=store, default_proxy=default_proxy)
    return connection, events


def attach(connection):
    """The client a connect() would start -- a real NewClient with the connection's
    handlers registered -- with its Go handle replaced by a FakeGo; not started."""
    attempt, _previous = connection._new_attempt()
    fake = FakeGo()
    attempt.client._NewClient__client = fake
    return attempt, fake


def connected(connection, events):
    """Attached and connected: the Go side has reported ConnectedEv."""
    attempt, fake = attach(connection)
    feed(attempt.client, ConnectedEv(status=True))
    events.wait_for("connected")
    return attempt, fake


def add_device_row(store: str, jid: str) -> None:
    """A whatsmeow_device row (keys of the right lengths; never used to talk to anyone)."""
    import psycopg

    nz.prepare_device_store(store)
    with psycopg.connect(store) as db:
        db.execute(
            "INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key, "
            "signed_pre_key, signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details, "
            "adv_account_sig, adv_account_sig_key, adv_device_sig, push_name) "
            "VALUES (%s, 1, %s, %s, %s, 1, %s, %s, %s, %s, %s, %s, %s)",
            (jid, b"\1" * 32, b"\2" * 32, b"\3" * 32, b"\4" * 64, b"k", b"d", b"\5" * 64,
             b"\6" * 32, b"\7" * 64, "Pizza, Pasta & Co"),
        )  # fmt: skip


def text_event(text: str = "שלום, אני רוצה להזמין", **info) -> MessageEv:
    ev = MessageEv()
    ev.Info.ID = info.get("id", "ABCD1234")
    ev.Info.Pushname = "Dana"
    ev.Info.Timestamp = info.get("timestamp_ms", 1_767_225_600_123)
    ev.Info.MessageSource.Sender.CopyFrom(user_jid(CUSTOMER, device=info.get("device", 0)))
    ev.Info.MessageSource.Chat.CopyFrom(user_jid(CUSTOMER))
    if text:
        ev.Message.conversation = text
    return ev


@pytest.fixture
def store(pg_store) -> str:
    return pg_store


# --- the connection's life: QR, pairing, connected ------------------------------------


def test_qr_codes_first_lives_60_seconds_later_ones_20(store):
    connection, events = make_connection(store)
    attempt, _fake = attach(connection)
    before = datetime.now(UTC)
    feed_qr(attempt.client, b"2@first-code,abc,def")
    feed_qr(attempt.client, b"2@second-code,abc,def")
    feed_qr(attempt.client, b"2@third-code,abc,def")
    first, second, third = events.wait_for("qr", 3)
    assert [qr["payload"] for qr in (first, second, third)] == [
        "2@first-code,abc,def",
        "2@second-code,abc,def",
        "2@third-code,abc,def",
    ]
    after = datetime.now(UTC)
    assert before + timedelta(seconds=60) <= first["expires_at"] <= after + timedelta(seconds=60)
    assert before + timedelta(seconds=20) <= second["expires_at"] <= after + timedelta(seconds=20)
    assert third["expires_at"] - second["expires_at"] < timedelta(seconds=2)


def test_pair_success_reports_the_number_and_the_device_and_resumes_it_next_time(store):
    connection, events = make_connection(store)
    attempt, _fake = attach(connection)
    feed_qr(attempt.client, b"2@code")
    feed(
        attempt.client,
        PairStatusEv(ID=user_jid(BUSINESS, device=12), Status=PairStatusEv.SUCCESS),
    )
    (paired,) = events.wait_for("paired")
    assert paired == {"phone_number": f"+{BUSINESS}", "device_jid": BUSINESS_DEVICE}
    assert connection.device_jid == BUSINESS_DEVICE


def test_connected_reports_the_phone_number_of_the_stored_device(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attempt, _fake = attach(connection)
    assert not connection.is_connected
    feed(attempt.client, ConnectedEv(status=True))
    assert events.wait_for("connected") == [{"phone_number": f"+{BUSINESS}"}]
    assert connection.is_connected


def test_handlers_survive_garbage_collection(store):
    """neonize keeps handlers as weak references: the connection must hold them."""
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attempt, _fake = attach(connection)
    client = attempt.client
    del attempt
    gc.collect()
    feed(client, ConnectedEv(status=True))
    events.wait_for("connected")


# --- disconnects: every row of DISCONNECT_TABLE -----------------------------------------


def _trigger(connection, attempt, key):
    """Make the connection meet `key` of DISCONNECT_TABLE for real."""
    client = attempt.client
    if key is NeonizeError:  # connect() failing: the real offline dial failure
        connection.connect()
        return
    if isinstance(key, tuple) and key[0] == nz.QR_LOGIN_STATUS:
        feed_login_status(client, key[1])
        return
    if isinstance(key, tuple) and key[0] is ConnectFailureEv:
        feed(client, ConnectFailureEv(Reason=key[1], Message="refused"))
        return
    builders = {
        LoggedOutEv: lambda: LoggedOutEv(OnConnect=True, Reason=ConnectFailureReason.LOGGED_OUT),
        TemporaryBanEv: lambda: TemporaryBanEv(
            Code=TemporaryBanEv.SENT_TOO_MANY_SAME_MESSAGE, Expire=3600
        ),
        StreamReplacedEv: StreamReplacedEv,
        DisconnectedEv: lambda: DisconnectedEv(status=True),
        KeepAliveTimeoutEv: lambda: KeepAliveTimeoutEv(ErrorCount=3, LastSuccess=0),
        ClientOutdatedEv: ClientOutdatedEv,
    }
    feed(client, builders[key]())


@pytest.mark.parametrize("key", list(nz.DISCONNECT_TABLE), ids=repr)
def test_every_row_of_the_disconnect_table(store, key):
    connection, events = make_connection(store)
    attempt, _fake = connected(connection, events)
    _trigger(connection, attempt, key)
    (reported,) = events.wait_for("disconnected")
    assert reported["kind"] == nz.DISCONNECT_TABLE[key]
    assert reported["reason"]
    assert not connection.is_connected


def test_the_table_covers_the_kinds_the_brief_names():
    table = nz.DISCONNECT_TABLE
    assert table[LoggedOutEv] == DisconnectKind.LOGGED_OUT
    assert table[ConnectFailureEv, ConnectFailureReason.LOGGED_OUT] == DisconnectKind.LOGGED_OUT
    assert table[ConnectFailureEv, ConnectFailureReason.MAIN_DEVICE_GONE] == (
        DisconnectKind.LOGGED_OUT
    )
    assert table[ConnectFailureEv, ConnectFailureReason.UNKNOWN_LOGOUT] == (
        DisconnectKind.LOGGED_OUT
    )
    assert table[TemporaryBanEv] == DisconnectKind.BANNED
    assert table[StreamReplacedEv] == DisconnectKind.REPLACED
    for transient in (
        DisconnectedEv,
        KeepAliveTimeoutEv,
        NeonizeError,
        (ConnectFailureEv, ConnectFailureReason.INTERNAL_SERVER_ERROR),
        (ConnectFailureEv, ConnectFailureReason.SERVICE_UNAVAILABLE),
    ):
        assert table[transient] == DisconnectKind.TRANSIENT, transient
    assert table[ClientOutdatedEv] == DisconnectKind.FATAL
    assert table[nz.QR_LOGIN_STATUS, "timeout"] == DisconnectKind.QR_EXPIRED
    every_reason = set(ConnectFailureReason.values())
    assert {key[1] for key in table if isinstance(key, tuple) and key[0] is ConnectFailureEv} == (
        every_reason
    )


def test_logged_out_401_forgets_the_device(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attempt, _fake = connected(connection, events)
    feed(attempt.client, LoggedOutEv(OnConnect=False, Reason=ConnectFailureReason.LOGGED_OUT))
    (reported,) = events.wait_for("disconnected")
    assert reported["kind"] == DisconnectKind.LOGGED_OUT
    assert "401" in reported["reason"]
    assert connection.device_jid == ""


def test_temporary_ban_reports_until_when_from_expire_and_the_code(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attempt, _fake = connected(connection, events)
    before = datetime.now(UTC)
    feed(
        attempt.client,
        TemporaryBanEv(Code=TemporaryBanEv.BLOCKED_BY_USERS, Expire=2 * 3600),  # seconds
    )
    (reported,) = events.wait_for("disconnected")
    assert reported["kind"] == DisconnectKind.BANNED
    until = reported["banned_until"]
    assert before + timedelta(hours=2) <= until <= datetime.now(UTC) + timedelta(hours=2)
    assert "BLOCKED_BY_USERS" in reported["reason"]
    assert connection.device_jid == BUSINESS_DEVICE  # a ban keeps the device


def test_stream_replaced_disconnected_and_keep_alive_timeout(store):
    for ev, kind in (
        (StreamReplacedEv(), DisconnectKind.REPLACED),
        (DisconnectedEv(status=True), DisconnectKind.TRANSIENT),
        (KeepAliveTimeoutEv(ErrorCount=2, LastSuccess=1_700_000_000), DisconnectKind.TRANSIENT),
    ):
        connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
        attempt, _fake = connected(connection, events)
        feed(attempt.client, ev)
        (reported,) = events.wait_for("disconnected")
        assert reported["kind"] == kind, type(ev).__name__


def test_one_report_per_attempt_but_a_graver_kind_still_goes_through(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attempt, _fake = connected(connection, events)
    feed(attempt.client, KeepAliveTimeoutEv(ErrorCount=1, LastSuccess=0))
    feed(attempt.client, DisconnectedEv(status=True))
    feed(attempt.client, LoggedOutEv(OnConnect=False, Reason=ConnectFailureReason.LOGGED_OUT))
    kinds = [call["kind"] for call in events.wait_for("disconnected", 2)]
    assert kinds == [DisconnectKind.TRANSIENT, DisconnectKind.LOGGED_OUT]


# --- connect() for real: offline, the dial fails at once -------------------------------


def test_connect_returns_at_once_and_an_offline_dial_is_transient(store):
    connection, events = make_connection(store)
    started = time.monotonic()
    connection.connect()
    assert time.monotonic() - started < 1.0
    (reported,) = events.wait_for("disconnected")
    assert reported["kind"] == DisconnectKind.TRANSIENT
    assert "failed to dial" in reported["reason"]
    attempt = connection._attempt
    attempt.thread.join(WAIT)
    assert not attempt.thread.is_alive()
    assert attempt.client.new_device is True and attempt.client.jid is None  # a new pairing
    assert attempt.client.uuid == connection.config.public_id.encode()


def test_connect_again_after_a_failure_works_with_a_fresh_client(store):
    connection, events = make_connection(store)
    connection.connect()
    events.wait_for("disconnected")
    first = connection._attempt
    first.thread.join(WAIT)
    connection.connect()
    reports = events.wait_for("disconnected", 2)
    second = connection._attempt
    second.thread.join(WAIT)
    assert [report["kind"] for report in reports] == [DisconnectKind.TRANSIENT] * 2
    assert second is not first and second.client is not first.client
    assert second.client.uuid == first.client.uuid  # one uuid per session, one live client
    assert first.stopped  # the earlier Go client was stopped before the next one started
    # A late event of the first client is no news any more.
    feed(first.client, DisconnectedEv(status=True))
    assert len(events.of("disconnected")) == 2


def test_a_stored_device_is_resumed_by_its_jid(store):
    add_device_row(store, BUSINESS_DEVICE)
    assert nz.device_in_store(store, BUSINESS_DEVICE)
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    connection.connect()
    (reported,) = events.wait_for("disconnected")
    assert reported["kind"] == DisconnectKind.TRANSIENT and "failed to dial" in reported["reason"]
    client = connection._attempt.client
    assert client.new_device is False
    assert (client.jid.User, client.jid.Device, client.jid.Server) == (
        BUSINESS,
        12,
        "s.whatsapp.net",
    )
    assert client.uuid == connection.config.public_id.encode()  # not the phone number
    assert connection.device_jid == BUSINESS_DEVICE


def test_a_device_missing_from_the_store_is_paired_anew_instead_of_aborting(store):
    nz.prepare_device_store(store)
    assert not nz.device_in_store(store, BUSINESS_DEVICE)
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    connection.connect()
    events.wait_for("disconnected")  # offline; online this would show a QR code
    client = connection._attempt.client
    assert client.new_device is True and client.jid is None
    assert connection.device_jid == ""


def test_the_session_proxy_is_used_and_its_password_never_shows(store, caplog):
    password = "s3cret-Pa55"
    proxy = f"socks5://proxyuser:{password}@127.0.0.1:1"
    connection, events = make_connection(store, proxy_url=proxy)
    caplog.set_level(logging.DEBUG)
    connection.connect()
    (reported,) = events.wait_for("disconnected")
    assert reported["kind"] == DisconnectKind.TRANSIENT
    assert "127.0.0.1:1" in reported["reason"]  # it really went through the proxy
    assert password not in reported["reason"]
    assert password not in caplog.text
    assert password not in repr(connection.config)
    assert nz.proxy_redacted(proxy) == "socks5://proxyuser:***@127.0.0.1:1"


def test_the_default_proxy_applies_without_a_session_proxy_and_a_bad_one_is_fatal(store):
    connection, _events = make_connection(store, default_proxy="socks5://127.0.0.1:1")
    assert connection.proxy_url == "socks5://127.0.0.1:1"
    mine, _events = make_connection(
        store, proxy_url="socks5://127.0.0.1:2", default_proxy="socks5://127.0.0.1:1"
    )
    assert mine.proxy_url == "socks5://127.0.0.1:2"
    bad, events = make_connection(store, proxy_url="ftp://user:pw-123@proxy.example.com:21")
    bad.connect()
    (reported,) = events.wait_for("disconnected")
    assert reported["kind"] == DisconnectKind.FATAL
    assert "pw-123" not in reported["reason"]


def test_disconnect_stops_the_go_client_and_later_events_are_not_reported(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attempt, fake = connected(connection, events)
    attempt.started = True  # as if its Go call were running
    connection.disconnect()
    assert "Stop" in fake.names()
    assert not connection.is_connected
    feed(attempt.client, DisconnectedEv(status=True))
    assert events.of("disconnected") == []
    assert connection.device_jid == BUSINESS_DEVICE  # kept for the next connect()


def test_logout_unlinks_stops_and_forgets_the_device(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attempt, fake = connected(connection, events)
    attempt.started = True
    connection.logout()
    assert fake.names()[:2] == ["Logout", "Stop"]
    assert connection.device_jid == ""


def test_logout_needs_a_connection(store):
    connection, _events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attach(connection)
    with pytest.raises(RetryLater):
        connection.logout()


def test_pair_phone_once_the_websocket_is_up(store):
    connection, _events = make_connection(store)
    attempt, fake = attach(connection)
    attempt.pairing = True
    with pytest.raises(RetryLater):
        connection.pair_phone("+972 54-111-2233")  # no QR code yet: the websocket is not up
    feed_qr(attempt.client, b"2@code")
    assert connection.pair_phone("+972 54-111-2233") == "ABCD-EFGH"
    (params,) = [args for name, args in fake.calls if name == "PairPhone"]
    assert params.phone == BUSINESS and params.showPushNotification
    with pytest.raises(NeverRetry):
        connection.pair_phone("not a number")


# --- inbound ----------------------------------------------------------------------------


def _inbound(store, ev, *, connect=False):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attempt, fake = connected(connection, events) if connect else attach(connection)
    feed(attempt.client, ev)
    (message,) = events.wait_for("message")
    return message, fake


def test_incoming_text(store):
    message, _fake = _inbound(store, text_event(device=3))
    assert message.kind == MessageKind.TEXT
    assert message.text == "שלום, אני רוצה להזמין"
    assert message.provider_message_id == "ABCD1234"
    assert message.chat == message.sender == f"+{CUSTOMER}"
    assert message.push_name == "Dana"
    assert not message.is_group
    # Info.Timestamp is in milliseconds.
    assert message.timestamp == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)


def test_incoming_extended_text_in_a_group_from_a_lid_sender(store):
    ev = text_event(text="")
    ev.Message.extendedTextMessage.text = "מה השעות?"
    source = ev.Info.MessageSource
    source.Chat.CopyFrom(user_jid("120363041234567890", server="g.us"))
    source.IsGroup = True
    source.Sender.CopyFrom(user_jid("145263728394857", server="lid"))
    source.SenderAlt.CopyFrom(user_jid(CUSTOMER))
    message, _fake = _inbound(store, ev)
    assert message.is_group and message.chat == GROUP
    assert message.sender == f"+{CUSTOMER}"
    assert message.text == "מה השעות?"


def test_incoming_image_with_caption_downloads_through_the_client(store):
    ev = text_event(text="")
    image = ev.Message.imageMessage
    image.caption, image.mimetype, image.fileLength = "התפריט", "image/jpeg", 2048
    image.directPath = "/v/t62/abc"
    message, fake = _inbound(store, ev, connect=True)
    assert message.kind == MessageKind.IMAGE
    assert message.text == message.media.caption == "התפריט"
    assert (message.media.mime_type, message.media.size) == ("image/jpeg", 2048)
    assert message.media.download() == b"\x89PNG fake image bytes"
    (downloaded,) = [args for name, args in fake.calls if name == "DownloadAny"]
    assert downloaded.imageMessage.directPath == "/v/t62/abc"


def test_incoming_voice_audio_document_sticker_and_contact(store):
    cases = {
        MessageKind.VOICE: lambda m: (setattr(m.audioMessage, "PTT", True), m.audioMessage),
        MessageKind.AUDIO: lambda m: (setattr(m.audioMessage, "mimetype", "audio/mpeg"),),
        MessageKind.DOCUMENT: lambda m: (
            setattr(m.documentMessage, "fileName", "menu.pdf"),
            setattr(m.documentMessage, "mimetype", "application/pdf"),
        ),
        MessageKind.STICKER: lambda m: (setattr(m.stickerMessage, "mimetype", "image/webp"),),
        MessageKind.VIDEO: lambda m: (setattr(m.videoMessage, "caption", "סרטון"),),
        MessageKind.CONTACT: lambda m: (
            setattr(m.contactMessage, "displayName", "Avi"),
            setattr(m.contactMessage, "vcard", "BEGIN:VCARD\nFN:Avi\nEND:VCARD"),
        ),
    }
    for kind, fill in cases.items():
        ev = text_event(text="")
        fill(ev.Message)
        message, _fake = _inbound(store, ev)
        assert message.kind == kind
        if kind == MessageKind.DOCUMENT:
            assert (message.media.filename, message.media.mime_type) == (
                "menu.pdf",
                "application/pdf",
            )
        if kind == MessageKind.CONTACT:
            assert message.contact == ContactCard(
                display_name="Avi", vcard="BEGIN:VCARD\nFN:Avi\nEND:VCARD"
            )
        if kind == MessageKind.VIDEO:
            assert message.text == "סרטון"


def test_incoming_location(store):
    ev = text_event(text="")
    place = ev.Message.locationMessage
    place.degreesLatitude, place.degreesLongitude = 32.0853, 34.7818
    place.name, place.address = "Dizengoff Center", "Tel Aviv"
    message, _fake = _inbound(store, ev)
    assert message.kind == MessageKind.LOCATION
    assert message.location == Location(
        latitude=32.0853, longitude=34.7818, name="Dizengoff Center", address="Tel Aviv"
    )


def test_incoming_reaction(store):
    ev = text_event(text="")
    ev.Message.reactionMessage.key.ID = "3EB0AAAA"
    ev.Message.reactionMessage.key.remoteJID = f"{CUSTOMER}@s.whatsapp.net"
    ev.Message.reactionMessage.text = "👍"
    message, _fake = _inbound(store, ev)
    assert message.kind == MessageKind.REACTION
    assert message.reaction == Reaction(target_id="3EB0AAAA", emoji="👍")


def test_incoming_reply_in_an_ephemeral_wrapper(store):
    ev = text_event(text="")
    inner = ev.Message.ephemeralMessage.message.extendedTextMessage
    inner.text = "כן, את זה"
    inner.contextInfo.stanzaID = "3EB0QUOTED"
    inner.contextInfo.participant = f"{BUSINESS}@s.whatsapp.net"
    message, _fake = _inbound(store, ev)
    assert (message.kind, message.text, message.reply_to_id) == (
        MessageKind.TEXT,
        "כן, את זה",
        "3EB0QUOTED",
    )


def test_own_and_protocol_messages_are_not_handed_on(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attempt, _fake = attach(connection)
    mine = text_event(text="sent from the phone")
    mine.Info.MessageSource.IsFromMe = True
    revoke = text_event(text="")
    revoke.Message.protocolMessage.key.ID = "3EB0OLD"
    keys_only = text_event(text="")
    keys_only.Message.senderKeyDistributionMessage.groupID = GROUP
    for ev in (mine, revoke, keys_only):
        feed(attempt.client, ev)
    feed(attempt.client, text_event(text="real"))
    (message,) = events.wait_for("message")
    assert message.text == "real"


def test_a_failing_sink_is_logged_not_swallowed_silently(store, caplog):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attempt, _fake = attach(connection)

    def broken(_message):
        raise RuntimeError("sink broke")

    events.message = broken
    with caplog.at_level(logging.ERROR, logger=nz.logger.name):
        feed(attempt.client, text_event())
    assert "handling MessageEv" in caplog.text and "sink broke" in caplog.text


def test_receipts(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attempt, _fake = attach(connection)
    read = ReceiptEv(MessageIDs=["3EB0A", "3EB0B"], Timestamp=1_767_225_600, Type=ReceiptEv.READ)
    read.MessageSource.Chat.CopyFrom(user_jid(CUSTOMER))
    read.MessageSource.Sender.CopyFrom(user_jid(CUSTOMER))
    feed(attempt.client, read)
    played = ReceiptEv(MessageIDs=["3EB0C"], Timestamp=1_767_225_601, Type=ReceiptEv.PLAYED)
    played.MessageSource.CopyFrom(read.MessageSource)
    feed(attempt.client, played)
    read_self = ReceiptEv(MessageIDs=["3EB0D"], Timestamp=1, Type=ReceiptEv.READ_SELF)
    feed(attempt.client, read_self)  # our own other device: not a receipt of the customer
    first, second = events.wait_for("receipt", 2)
    assert first.provider_message_ids == ("3EB0A", "3EB0B")
    assert (first.chat, first.kind) == (f"+{CUSTOMER}", ReceiptKind.READ)
    assert first.timestamp == datetime(2026, 1, 1, tzinfo=UTC)  # receipts are in seconds
    assert second.kind == ReceiptKind.PLAYED
    assert len(events.of("receipt")) == 2


def test_presence(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attempt, _fake = attach(connection)
    for state, media in (
        (ChatPresenceEv.COMPOSING, ChatPresenceEv.TEXT),
        (ChatPresenceEv.COMPOSING, ChatPresenceEv.AUDIO),
        (ChatPresenceEv.PAUSED, ChatPresenceEv.TEXT),
    ):
        ev = ChatPresenceEv(State=state, Media=media)
        ev.MessageSource.Chat.CopyFrom(user_jid(CUSTOMER))
        ev.MessageSource.Sender.CopyFrom(user_jid(CUSTOMER))
        feed(attempt.client, ev)
    presences = events.wait_for("presence", 3)
    assert [p.state for p in presences] == [
        PresenceState.TYPING,
        PresenceState.RECORDING,
        PresenceState.PAUSED,
    ]
    assert {(p.chat, p.sender) for p in presences} == {(f"+{CUSTOMER}", f"+{CUSTOMER}")}


# --- outbound ---------------------------------------------------------------------------


def test_send_text(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    _attempt, fake = connected(connection, events)
    result = connection.send(OutboundMessage(to=f"+{CUSTOMER}", text="ההזמנה התקבלה"))
    ((to, built),) = fake.sent
    assert (to.User, to.Server, to.Device) == (CUSTOMER, "s.whatsapp.net", 0)
    assert built.conversation == "ההזמנה התקבלה"
    assert result.provider_message_id == fake.sent_ids[0]


def test_send_reply_quotes_the_message_it_answers(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    attempt, fake = connected(connection, events)
    feed(attempt.client, text_event(text="יש משלוחים?", id="3EB0ASKED"))
    events.wait_for("message")
    connection.send(OutboundMessage(to=f"+{CUSTOMER}", text="כן!", reply_to_id="3EB0ASKED"))
    ((_to, built),) = fake.sent
    reply = built.extendedTextMessage
    assert reply.text == "כן!"
    assert reply.contextInfo.stanzaID == "3EB0ASKED"
    assert reply.contextInfo.participant == f"{CUSTOMER}@s.whatsapp.net"
    assert reply.contextInfo.quotedMessage.conversation == "יש משלוחים?"
    # A message it does not remember is still quoted by id.
    connection.send(OutboundMessage(to=f"+{CUSTOMER}", text="ועוד", reply_to_id="3EB0OLDER"))
    context = fake.sent[1][1].extendedTextMessage.contextInfo
    assert (context.stanzaID, context.participant) == (
        "3EB0OLDER",
        f"{CUSTOMER}@s.whatsapp.net",
    )


def test_send_reaction(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    _attempt, fake = connected(connection, events)
    connection.send(
        OutboundMessage(
            to=f"+{CUSTOMER}",
            kind=MessageKind.REACTION,
            reaction=Reaction(target_id="3EB0THEIRS", emoji="❤️"),
        )
    )
    ((to, built),) = fake.sent
    reaction = built.reactionMessage
    assert reaction.text == "❤️"
    assert (reaction.key.ID, reaction.key.remoteJID, reaction.key.fromMe) == (
        "3EB0THEIRS",
        f"{CUSTOMER}@s.whatsapp.net",
        False,
    )
    assert abs(reaction.senderTimestampMS / 1000 - time.time()) < 60
    assert to.User == CUSTOMER


def test_send_location_and_contact(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    _attempt, fake = connected(connection, events)
    connection.send(
        OutboundMessage(
            to=f"+{CUSTOMER}",
            kind=MessageKind.LOCATION,
            location=Location(latitude=31.7683, longitude=35.2137, name="הסניף", address="ירושלים"),
        )
    )
    connection.send(
        OutboundMessage(
            to=GROUP,
            kind=MessageKind.CONTACT,
            contact=ContactCard(display_name="Avi"),
        )
    )
    (to_customer, location), (to_group, contact) = fake.sent
    assert to_customer.User == CUSTOMER
    place = location.locationMessage
    assert (place.degreesLatitude, place.degreesLongitude, place.name, place.address) == (
        31.7683,
        35.2137,
        "הסניף",
        "ירושלים",
    )
    assert (to_group.User, to_group.Server) == ("120363041234567890", "g.us")
    assert contact.contactMessage.displayName == "Avi"
    assert "FN:Avi" in contact.contactMessage.vcard


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_send_image_from_bytes_uploads_then_sends(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    _attempt, fake = connected(connection, events)
    picture = _png()
    connection.send(
        OutboundMessage(
            to=f"+{CUSTOMER}", kind=MessageKind.IMAGE, text="המבצע", media_bytes=picture
        )
    )
    assert fake.names() == ["Upload", "SendMessage"]
    assert fake.calls[0][1][0] == picture
    image = fake.sent[0][1].imageMessage
    assert (image.caption, image.mimetype, image.directPath) == ("המבצע", "image/png", "/v/fake")


def test_send_errors_map_to_retry_later_never_retry_and_rate_limited(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    with pytest.raises(RetryLater):  # not connected
        connection.send(OutboundMessage(to=f"+{CUSTOMER}", text="hi"))
    _attempt, fake = connected(connection, events)
    with pytest.raises(NeverRetry):
        connection.send(OutboundMessage(to="not a number", text="hi"))
    with pytest.raises(NeverRetry):
        connection.send(OutboundMessage(to="someone@broadcast", text="hi"))
    for error, expected in (
        ("websocket not connected", RetryLater),
        ("timed out waiting for message send response", RetryLater),
        ("the store doesn't contain a device JID", NeverRetry),
        ("server returned error 429: rate-overlimit", RateLimited),
    ):
        fake.send_error = error
        with pytest.raises(expected) as raised:
            connection.send(OutboundMessage(to=f"+{CUSTOMER}", text="hi"))
        assert type(raised.value) is expected, error
    with pytest.raises(NeverRetry):
        connection.send(OutboundMessage(to=f"+{CUSTOMER}", kind=MessageKind.IMAGE))
    fake.send_error = ""
    with pytest.raises(NeverRetry):  # Pillow cannot read it: nothing is uploaded
        connection.send(
            OutboundMessage(to=f"+{CUSTOMER}", kind=MessageKind.IMAGE, media_bytes=b"not a png")
        )
    assert "Upload" not in fake.names()
    with pytest.raises(NeverRetry):  # never a local file path
        connection.send(
            OutboundMessage(to=f"+{CUSTOMER}", kind=MessageKind.IMAGE, media_url="/etc/passwd")
        )


def test_mark_read_and_typing(store):
    connection, events = make_connection(store, device_jid=BUSINESS_DEVICE)
    _attempt, fake = connected(connection, events)
    connection.mark_read(chat=f"+{CUSTOMER}", sender=f"+{CUSTOMER}", message_ids=["A1", "B2"])
    connection.set_typing(chat=f"+{CUSTOMER}", typing=True)
    connection.set_typing(chat=f"+{CUSTOMER}", typing=False)
    read = dict(fake.calls)["MarkRead"]
    assert read["ids"] == ["A1", "B2"] and read["chat"].User == CUSTOMER
    assert read["receipt"] == b"read"
    typing = [args for name, args in fake.calls if name == "SendChatPresence"]
    assert [(jid.User, state, media) for jid, state, media in typing] == [
        (CUSTOMER, 0, 0),  # composing, text
        (CUSTOMER, 1, 0),  # paused
    ]


# --- the device store and the settings -------------------------------------------------


def test_jids_round_trip():
    jid = nz.jid_from_string(BUSINESS_DEVICE)
    assert (jid.User, jid.Device, jid.Server) == (BUSINESS, 12, "s.whatsapp.net")
    assert nz.Jid2String(jid) == BUSINESS_DEVICE
    assert nz.Jid2String(nz.jid_from_string(GROUP)) == GROUP
    with pytest.raises(ValueError):
        nz.jid_from_string("972501234567")


def test_the_device_store_in_postgresql_lands_in_the_public_schema():
    """On the test server, in a throwaway database (neonize's Go side keeps one idle
    connection per store open: the database is dropped WITH (FORCE))."""
    import psycopg
    from django.conf import settings

    database = settings.DATABASES["default"]
    name = f"neonize_store_{uuid.uuid4().hex[:8]}"
    admin_url = nz_url(database, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        store = nz_url(database, name)
        nz.prepare_device_store(store)
        assert not nz.device_in_store(store, BUSINESS_DEVICE)
        with psycopg.connect(store) as db:
            schemas = db.execute(
                "SELECT DISTINCT table_schema FROM information_schema.tables "
                "WHERE table_name LIKE 'whatsmeow_%%'"
            ).fetchall()
        assert schemas == [("public",)]
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def nz_url(database: dict, name: str) -> str:
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    host, port = database.get("HOST") or "localhost", database.get("PORT") or 5432
    return f"postgres://{database['USER']}{password}@{host}:{port}/{name}?sslmode=disable"


def test_the_device_store_follows_the_database_django_uses(committed_db):
    from django.conf import settings
    from django.db import connection

    from sessions_app.providers.neonize_provider import neonize_store_url

    assert settings.NEONIZE_DATABASE_URL == ""
    url = neonize_store_url()
    assert url.startswith(f"postgres://{connection.settings_dict['USER']}")
    assert url.endswith(f"/{connection.settings_dict['NAME']}?sslmode=disable")
    assert connection.settings_dict["NAME"].startswith("test_")
    assert settings.NEONIZE_DEFAULT_PROXY == ""


# --- the device store's PostgreSQL connections ------------------------------------------
# neonize's Go side opens the store afresh in each connect (and each GetAllDevices) and
# never closes it: each call would keep one connection open on the server for the life
# of the process (bench/neonize_memory.py ran the server out of connections that way).


@pytest.fixture
def pg_store():
    """A device store in a throwaway PostgreSQL database on the test server."""
    import psycopg
    from django.conf import settings

    database = settings.DATABASES["default"]
    name = f"neonize_store_{uuid.uuid4().hex[:8]}"
    admin_url = nz_url(database, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield nz_url(database, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def store_connections(store: str) -> list[tuple[str, str]]:
    """(application_name, state) of every server connection to the store's database."""
    import psycopg

    with psycopg.connect(store, autocommit=True) as db:
        return db.execute(
            "SELECT application_name, state FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()


def wait_until(condition, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def add_pg_device_row(store: str, jid: str) -> None:
    import psycopg

    nz.prepare_device_store(store)
    with psycopg.connect(store) as db:
        db.execute(
            "INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key, "
            "signed_pre_key, signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details, "
            "adv_account_sig, adv_account_sig_key, adv_device_sig, push_name) "
            "VALUES (%s, 1, %s, %s, %s, 1, %s, %s, %s, %s, %s, %s, %s)",
            (jid, b"\1" * 32, b"\2" * 32, b"\3" * 32, b"\4" * 64, b"k", b"d", b"\5" * 64,
             b"\6" * 32, b"\7" * 64, "Pizza, Pasta & Co"),
        )  # fmt: skip


def test_failed_connects_leave_no_store_connection_open_on_the_server(pg_store):
    connection, events = make_connection(pg_store)
    names = set()
    for count in (1, 2, 3):
        connection.connect()
        (*_earlier, reported) = events.wait_for("disconnected", count)
        assert "failed to dial" in reported["reason"]  # the server took the parameters
        attempt = connection._attempt
        attempt.thread.join(WAIT)
        names.add(attempt.application_name)
        # The Go call got a URL of its own: tagged, with the server-side idle timeout.
        assert f"application_name={attempt.application_name}" in attempt.client.name
        assert "idle_session_timeout=30000" in attempt.client.name
        assert "sslmode=disable" in attempt.client.name
    assert len(names) == 3 and all(name.startswith("neonize-") for name in names)
    # Without the release, 4 idle connections: one per connect, one of GetAllDevices.
    assert store_connections(pg_store) == []


def test_the_server_closes_store_connections_left_idle(pg_store, monkeypatch):
    """The safety net: even connections nobody released are closed by the server."""
    monkeypatch.setattr(nz, "release_store_connections", lambda store, name: 0)
    monkeypatch.setattr(nz, "STORE_IDLE_SESSION_SECONDS", 1)
    connection, events = make_connection(pg_store)
    connection.connect()
    events.wait_for("disconnected")
    connection._attempt.thread.join(WAIT)
    left = store_connections(pg_store)
    assert len(left) == 2  # this connect's, and the one of GetAllDevices (prepare)
    assert {state for _name, state in left} == {"idle"}
    assert wait_until(lambda: store_connections(pg_store) == [], timeout=10)


def test_a_client_whose_store_connection_was_closed_reopens_one(pg_store):
    """A live client is not hurt by a closed idle connection: lib/pq reports it as a bad
    connection and database/sql runs the query on a new one -- here with a device
    resumed from the store, whose Go client stays registered after the offline dial."""
    add_pg_device_row(pg_store, BUSINESS_DEVICE)
    connection, events = make_connection(pg_store, device_jid=BUSINESS_DEVICE)
    connection.connect()
    events.wait_for("disconnected")
    attempt = connection._attempt
    attempt.thread.join(WAIT)
    assert attempt.client.new_device is False  # resumed from the store
    assert store_connections(pg_store) == []  # released: its pool's connection is gone
    contacts = attempt.client.contact
    for number in range(3):
        customer = user_jid(f"97250123456{number}")
        name = f"Dana {number}"
        nz._neonize_call(lambda c=customer, n=name: contacts.put_contact_name(c, n, "Dana"))
        stored = nz._neonize_call(contacts.get_all_contacts)
        assert len(stored) == number + 1
        assert [name for name, _state in store_connections(pg_store)] == [attempt.application_name]
        assert nz.release_store_connections(pg_store, attempt.application_name) == 1
    assert store_connections(pg_store) == []


def test_store_urls_per_call():
    store = "postgres://bot:pw@db.example:5432/wa?sslmode=require&application_name=theirs"
    nz._STORE_SETTINGS[store] = {"idle_session_timeout": "30000"}
    try:
        url = nz.store_url_for_call(store, "neonize-1-abc-7")
        assert url == (
            "postgres://bot:pw@db.example:5432/wa?sslmode=require"
            "&application_name=neonize-1-abc-7&idle_session_timeout=30000"
        )
        mine = store + "&idle_session_timeout=5000"
        nz._STORE_SETTINGS[mine] = {"idle_session_timeout": "30000"}
        assert nz.store_url_for_call(mine, "n").endswith(  # the URL's own setting wins
            "sslmode=require&idle_session_timeout=5000&application_name=n"
        )
        nz._STORE_SETTINGS[store] = {}  # a server older than PostgreSQL 14
        assert "idle_session_timeout" not in nz.store_url_for_call(store, "n")
    finally:
        nz._STORE_SETTINGS.pop(store, None)
        nz._STORE_SETTINGS.pop(store + "&idle_session_timeout=5000", None)
    assert nz.store_url_for_call("/tmp/neonize.db", "n") == "/tmp/neonize.db"  # not a URL
    first, second = nz.store_application_name(), nz.store_application_name()
    assert first != second and len(first) < 64  # PostgreSQL keeps 63 characters


def test_releasing_never_raises(caplog):
    unreachable = "postgres://bot@127.0.0.1:1/wa?sslmode=disable"
    assert nz.release_store_connections(unreachable, "neonize-1-abc-7") == 0
    assert "idle timeout will" in caplog.text
    assert nz.release_store_connections("/tmp/neonize.db", "n") == 0
    with pytest.raises(nz.DeviceStoreError):  # a connect reports it as transient
        nz.store_url_for_call(unreachable, "n")
