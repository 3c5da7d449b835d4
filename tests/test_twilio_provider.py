"""The Twilio provider, through the real `twilio` SDK, against a local stand-in of
Twilio's API (tests/twilio_standin.py): what the SDK really sent, how Twilio's answers
become RetryLater / RateLimited / NeverRetry, and that the auth token never leaks."""

import base64
import json
import logging
import socket
import traceback
import uuid

import pytest
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import connection

from sessions_app.models import WhatsAppSession
from sessions_app.providers.base import (
    Location,
    MessageKind,
    NeverRetry,
    OutboundMessage,
    RateLimited,
    Reaction,
    RetryLater,
)
from sessions_app.providers.twilio_provider import (
    IDEMPOTENCY_HEADER,
    TwilioProvider,
    TwilioStatus,
    twilio_credentials_check,
    twilio_inbound_parse,
    twilio_status_parse,
)
from sessions_app.services import session_create
from tests.twilio_standin import new_sid

CUSTOMER = "+972501234567"
MESSAGES_PATH = "/Messages.json"


def _sender_number() -> str:
    return f"+1415{uuid.uuid4().int % 10**7:07d}"


@pytest.fixture
def standin(twilio_standin):
    return twilio_standin


@pytest.fixture
def make_twilio_session(make_tenant, standin):
    """A Twilio session created through the service, with an account the stand-in knows."""
    tenant = make_tenant()

    def make(*, messaging_service_sid: str = "", with_number: bool = True, token: str = ""):
        account_sid, auth_token = standin.add_account()
        session = session_create(
            tenant=tenant,
            name=f"Twilio {uuid.uuid4().hex[:6]}",
            provider="twilio",
            twilio_account_sid=account_sid,
            twilio_auth_token=token or auth_token,
            twilio_from_number=_sender_number() if with_number else "",
            twilio_messaging_service_sid=messaging_service_sid,
            check_credentials=not token,  # a wrong token on purpose: Twilio would refuse it
        )
        with standin._lock:  # tests count their own requests, not the creation's check
            standin.requests.clear()
        return WhatsAppSession.objects.get(pk=session.pk)

    return make


def _token(session: WhatsAppSession) -> str:
    return str(session.twilio_auth_token)


def _only_message_request(standin):
    sent = standin.requests_to(MESSAGES_PATH)
    assert len(sent) == 1, f"expected one POST to Messages.json, got {len(sent)}"
    return sent[0]


def _assert_no_token(token: str, *texts: str) -> None:
    for text in texts:
        assert token not in text, f"the auth token leaked into: {text[:300]!r}"


# --- sending: what the SDK really sent ------------------------------------------------


def test_send_text_posts_whatsapp_addresses_and_status_callback(
    make_twilio_session, standin, settings
):
    # Given a Twilio session with a sender number
    session = make_twilio_session()

    # When a text is sent
    result = TwilioProvider(session).send(OutboundMessage(to=CUSTOMER, text="Shalom!"))

    # Then the SDK posted the WhatsApp addresses, the body and the status callback
    request = _only_message_request(standin)
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{session.twilio_account_sid}/Messages.json"
    assert request.field("From") == f"whatsapp:{session.twilio_from_number}"
    assert request.field("To") == f"whatsapp:{CUSTOMER}"
    assert request.field("Body") == "Shalom!"
    assert request.field("StatusCallback") == f"{settings.PUBLIC_URL}/webhooks/twilio/status/"
    assert request.field("MessagingServiceSid") is None
    # ... built by the real SDK, as a form
    assert request.header("User-Agent").startswith("twilio-python/")
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    # And the result is the message SID Twilio gave
    assert result.provider_message_id == standin.messages[0]["sid"]
    assert result.provider_message_id.startswith("SM")


def test_send_uses_the_messaging_service_when_no_sender_number_is_set(make_twilio_session, standin):
    # Given a session that sends through a messaging service
    service_sid = new_sid("MG")
    session = make_twilio_session(messaging_service_sid=service_sid, with_number=False)

    # When a text is sent
    TwilioProvider(session).send(OutboundMessage(to=CUSTOMER, text="Hi"))

    # Then the request names the service and no From
    request = _only_message_request(standin)
    assert request.field("MessagingServiceSid") == service_sid
    assert request.field("From") is None


def test_send_media_posts_media_url_with_caption(make_twilio_session, standin):
    # Given a session
    session = make_twilio_session()

    # When an image is sent by URL with a caption
    TwilioProvider(session).send(
        OutboundMessage(
            to=CUSTOMER,
            kind=MessageKind.IMAGE,
            media_url="https://cdn.example.com/menu.jpg",
            text="Today's menu",
        )
    )

    # Then MediaUrl carries the URL and Body the caption
    request = _only_message_request(standin)
    assert request.form["MediaUrl"] == ["https://cdn.example.com/menu.jpg"]
    assert request.field("Body") == "Today's menu"


def test_send_template_posts_content_sid_and_variables_as_json(make_twilio_session, standin):
    # Given a session, and a customer outside the 24-hour window
    session = make_twilio_session()
    template_sid = new_sid("HX")

    # When an approved content template is sent
    TwilioProvider(session).send(
        OutboundMessage(
            to=CUSTOMER,
            template_sid=template_sid,
            template_variables={"1": "Dana", "2": "12:30"},
        )
    )

    # Then ContentSid names it and ContentVariables is JSON; there is no Body
    request = _only_message_request(standin)
    assert request.field("ContentSid") == template_sid
    assert json.loads(request.field("ContentVariables")) == {"1": "Dana", "2": "12:30"}
    assert request.field("Body") is None
    assert request.field("StatusCallback") is not None


def test_send_location_uses_a_geo_persistent_action(make_twilio_session, standin):
    # Given a session
    session = make_twilio_session()

    # When a location is sent
    TwilioProvider(session).send(
        OutboundMessage(
            to=CUSTOMER,
            kind=MessageKind.LOCATION,
            location=Location(latitude=32.0853, longitude=34.7818, name="The shop"),
        )
    )

    # Then PersistentAction carries the geo: URI and Body the place
    request = _only_message_request(standin)
    assert request.field("PersistentAction") == "geo:32.0853,34.7818|The shop"
    assert request.field("Body") == "The shop"


def test_each_session_sends_with_its_own_credentials(make_twilio_session, standin):
    # Given two Twilio sessions of different accounts
    first, second = make_twilio_session(), make_twilio_session()
    assert first.twilio_account_sid != second.twilio_account_sid

    # When each sends a message
    TwilioProvider(first).send(OutboundMessage(to=CUSTOMER, text="from the first"))
    TwilioProvider(second).send(OutboundMessage(to=CUSTOMER, text="from the second"))

    # Then each request carried its own session's SID and token as basic auth
    sent = standin.requests_to(MESSAGES_PATH)
    assert [(r.auth_user, r.auth_password, r.field("Body")) for r in sent] == [
        (first.twilio_account_sid, _token(first), "from the first"),
        (second.twilio_account_sid, _token(second), "from the second"),
    ]
    assert sent[0].path.startswith(f"/2010-04-01/Accounts/{first.twilio_account_sid}/")
    assert sent[1].path.startswith(f"/2010-04-01/Accounts/{second.twilio_account_sid}/")


def test_send_carries_the_idempotency_key_as_twilio_idempotency_header(
    make_twilio_session, standin
):
    # Given a session whose first attempt fails with a 500
    session = make_twilio_session()
    provider = TwilioProvider(session)
    message = OutboundMessage(to=CUSTOMER, text="once", idempotency_key="outbox-42-7")
    standin.fail_next(status=500, code=20500)

    # When the send is retried with the same key, and another message has no key
    with pytest.raises(RetryLater):
        provider.send(message)
    provider.send(message)
    provider.send(OutboundMessage(to=CUSTOMER, text="no key"))

    # Then both attempts carried the same token, and the keyless send none
    sent = standin.requests_to(MESSAGES_PATH)
    assert [r.header(IDEMPOTENCY_HEADER) for r in sent] == ["outbox-42-7", "outbox-42-7", None]


def test_kinds_twilio_cannot_send_never_retry_without_a_request(make_twilio_session, standin):
    # Given a session
    provider = TwilioProvider(make_twilio_session())
    unsendable = [
        OutboundMessage(
            to=CUSTOMER, kind=MessageKind.REACTION, reaction=Reaction(target_id="SMx", emoji="👍")
        ),
        OutboundMessage(to=CUSTOMER, kind=MessageKind.IMAGE, media_bytes=b"\x89PNG"),
        OutboundMessage(to="120363041234567890@g.us", text="to a group"),
        OutboundMessage(to=CUSTOMER, text=""),
    ]

    # When each is sent, Then it never retries and nothing reaches Twilio
    for message in unsendable:
        with pytest.raises(NeverRetry) as raised:
            provider.send(message)
        assert str(raised.value)
    assert standin.requests == []
    # And typing is a no-op (Twilio has none), as the capabilities say
    provider.set_typing(chat=CUSTOMER, typing=True)
    assert not provider.capabilities.typing and not provider.capabilities.reactions
    assert provider.capabilities.templates and not provider.capabilities.media_upload


# --- error mapping --------------------------------------------------------------------


def test_server_error_is_retry_later(make_twilio_session, standin):
    # Given Twilio answers the next request with a 500
    provider = TwilioProvider(make_twilio_session())
    standin.fail_next(status=500, code=20500, message="Internal Server Error")

    # When a message is sent
    with pytest.raises(RetryLater) as raised:
        provider.send(OutboundMessage(to=CUSTOMER, text="hello"))

    # Then it is to be retried later (not a rate limit), with Twilio's code
    assert not isinstance(raised.value, RateLimited)
    assert raised.value.code == 20500
    assert "20500" in str(raised.value)


def test_too_many_requests_is_rate_limited_with_retry_after(make_twilio_session, standin):
    # Given Twilio answers 429 with Retry-After
    provider = TwilioProvider(make_twilio_session())
    standin.fail_next(status=429, code=20429, message="Too Many Requests", retry_after=7)

    # When a message is sent
    with pytest.raises(RateLimited) as raised:
        provider.send(OutboundMessage(to=CUSTOMER, text="hello"))

    # Then the caller is told when to retry
    assert raised.value.retry_after == 7.0
    assert raised.value.code == 20429


def test_whatsapp_rate_limit_code_is_rate_limited_even_without_429(make_twilio_session, standin):
    # Given Twilio answers 400 with WhatsApp's rate-limit code 63018
    provider = TwilioProvider(make_twilio_session())
    standin.fail_next(status=400, code=63018, message="Rate limit exceeded")

    # When a message is sent, Then it is RateLimited
    with pytest.raises(RateLimited) as raised:
        provider.send(OutboundMessage(to=CUSTOMER, text="hello"))
    assert raised.value.code == 63018
    assert raised.value.retry_after is None


def test_invalid_recipient_never_retries_with_twilio_code(make_twilio_session, standin):
    # Given Twilio rejects the To number (21211)
    provider = TwilioProvider(make_twilio_session())
    standin.fail_next(
        status=400, code=21211, message="The 'To' number +972501234567 is not a valid phone number."
    )

    # When a message is sent
    with pytest.raises(NeverRetry) as raised:
        provider.send(OutboundMessage(to=CUSTOMER, text="hello"))

    # Then it never retries, and says why in words
    assert raised.value.code == 21211
    assert "not a valid phone number" in str(raised.value)


def test_closed_24_hour_window_never_retries_and_points_at_templates(make_twilio_session, standin):
    # Given the customer's 24-hour window is closed
    provider = TwilioProvider(make_twilio_session())
    standin.fail_next(status=400, code=63016, message="Failed to send freeform message")

    # When a free-form text is sent, Then it never retries and names the way out
    with pytest.raises(NeverRetry) as raised:
        provider.send(OutboundMessage(to=CUSTOMER, text="hello"))
    assert raised.value.code == 63016
    assert "template" in str(raised.value)


def test_wrong_credentials_never_retry_with_code_20003(make_twilio_session, standin):
    # Given a session whose token Twilio does not accept (a real 401 from the stand-in)
    session = make_twilio_session(token="f" * 32)

    # When it sends
    with pytest.raises(NeverRetry) as raised:
        TwilioProvider(session).send(OutboundMessage(to=CUSTOMER, text="hello"))

    # Then it never retries, with Twilio's authentication code
    assert raised.value.code == 20003
    assert raised.value.status == 401
    assert "credentials" in str(raised.value) or "auth token" in str(raised.value)


def test_timeout_is_retry_later(make_twilio_session, standin):
    # Given Twilio takes longer to answer than the provider waits
    provider = TwilioProvider(make_twilio_session(), timeout=0.3)
    standin.fail_next(status=500, code=20500, delay=1.5)

    # When a message is sent, Then it is retried later
    with pytest.raises(RetryLater) as raised:
        provider.send(OutboundMessage(to=CUSTOMER, text="hello"))
    assert not isinstance(raised.value, RateLimited)
    assert "did not answer" in str(raised.value)


def test_unreachable_twilio_is_retry_later(make_twilio_session, settings):
    # Given nothing listens where the SDK is pointed
    session = make_twilio_session()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{closed_port}"

    # When a message is sent, Then it is retried later
    with pytest.raises(RetryLater) as raised:
        TwilioProvider(session, timeout=2).send(OutboundMessage(to=CUSTOMER, text="hello"))
    assert "connect" in str(raised.value).lower()


# --- the auth token never leaks -------------------------------------------------------


def test_auth_token_appears_in_no_error_repr_or_log_line(make_twilio_session, standin, caplog):
    # Given a session, with everything logged at DEBUG (the SDK logs its requests)
    session = make_twilio_session()
    token = _token(session)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="twilio.http_client")  # WARNING in settings
    provider = TwilioProvider(session)
    errors = []

    # When it sends, fails in every way, and its credentials are checked
    provider.send(OutboundMessage(to=CUSTOMER, text="ok"))
    for status, code in ((500, 20500), (429, 20429), (400, 21211), (401, 20003)):
        standin.fail_next(status=status, code=code, message=f"failure {code}")
        with pytest.raises((RetryLater, NeverRetry)) as raised:
            provider.send(OutboundMessage(to=CUSTOMER, text="fails"))
        errors.append(raised.value)
    wrong = make_twilio_session(token="0" * 32)
    with pytest.raises(NeverRetry) as raised:
        TwilioProvider(wrong).send(OutboundMessage(to=CUSTOMER, text="bad token"))
    errors.append(raised.value)
    twilio_credentials_check(account_sid=session.twilio_account_sid, auth_token=token)

    # Then the SDK did log its requests...
    assert "BEGIN Twilio API Request" in caplog.text
    # ...but the token is in no log line, error message, traceback or repr
    _assert_no_token(token, caplog.text, *(r.getMessage() for r in caplog.records))
    _assert_no_token(_token(wrong), caplog.text)
    for error in errors:
        _assert_no_token(token, str(error), repr(error), "".join(traceback.format_exception(error)))
    _assert_no_token(
        token,
        repr(session),
        str(session),
        repr(provider),
        repr(session.twilio_auth_token),
        repr(vars(session)),
    )


def test_sdk_log_lines_mask_the_token_even_if_the_sdk_printed_it(make_twilio_session, caplog):
    # Given a provider, and an SDK that (in some future version) logs the credentials
    session = make_twilio_session()
    token = _token(session)
    provider = TwilioProvider(session)
    caplog.set_level(logging.DEBUG, logger="twilio.http_client")

    # When the SDK's logger is handed the token, raw and as Basic credentials
    basic = base64.b64encode(f"{session.twilio_account_sid}:{token}".encode()).decode()
    provider._http.logger.info("auth %s", (session.twilio_account_sid, token))
    provider._http.logger.debug(f"Authorization: Basic {basic}")

    # Then the lines are logged with both masked
    assert caplog.text.count("********") == 2
    _assert_no_token(token, caplog.text)
    _assert_no_token(basic, caplog.text)


def test_without_a_base_url_the_sdk_talks_to_twilio_itself(make_twilio_session, settings):
    # Given no TWILIO_API_BASE_URL (production)
    session = make_twilio_session()
    settings.TWILIO_API_BASE_URL = ""

    # When the provider's HTTP client prepares Twilio URLs, Then they are left alone
    http = TwilioProvider(session)._http
    url = f"https://api.twilio.com/2010-04-01/Accounts/{session.twilio_account_sid}/Messages.json"
    assert http.rewrite(url) == url
    assert not http.is_twilio_url("http://127.0.0.1:9/steal")


def test_auth_token_is_encrypted_in_the_table_and_decrypted_by_the_model(make_twilio_session):
    # Given a Twilio session saved with its token
    session = make_twilio_session()
    token = _token(session)

    # When the table is read directly
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT twilio_auth_token FROM sessions_app_whatsappsession WHERE id = %s",
            [session.pk],
        )
        (stored,) = cursor.fetchone()

    # Then the column holds ciphertext, while the model gives the token back
    assert stored and token not in stored
    assert WhatsAppSession.objects.get(pk=session.pk).twilio_auth_token == token


# --- checking credentials -------------------------------------------------------------


def test_credentials_check_accepts_credentials_twilio_accepts(standin):
    # Given an account Twilio knows
    account_sid, auth_token = standin.add_account()

    # When its credentials are checked, Then nothing is raised
    twilio_credentials_check(account_sid=account_sid, auth_token=auth_token)

    # And the account was fetched through the SDK with them
    (request,) = standin.requests
    assert (request.method, request.path) == ("GET", f"/2010-04-01/Accounts/{account_sid}.json")
    assert (request.auth_user, request.auth_password) == (account_sid, auth_token)


def test_credentials_check_rejects_a_wrong_token_on_the_token_field(
    standin,
):
    # Given an account, and a wrong token for it
    account_sid, _ = standin.add_account()
    wrong_token = "a" * 32

    # When the credentials are checked
    with pytest.raises(ValidationError) as raised:
        twilio_credentials_check(account_sid=account_sid, auth_token=wrong_token)

    # Then the error is on the token field, and does not repeat it
    messages = raised.value.message_dict
    assert "20003" in messages["twilio_auth_token"][0]
    _assert_no_token(wrong_token, str(raised.value))


def test_credentials_check_rejects_a_malformed_sid_without_asking_twilio(
    standin,
):
    # When a SID that cannot be one is checked
    with pytest.raises(ValidationError) as raised:
        twilio_credentials_check(account_sid="not-a-sid", auth_token="x" * 32)

    # Then the SID field is blamed and Twilio is not asked
    assert "twilio_account_sid" in raised.value.message_dict
    assert standin.requests == []


def test_credentials_check_reports_twilio_outage_as_a_form_error(standin):
    # Given Twilio fails with a 503
    account_sid, auth_token = standin.add_account()
    standin.fail_next(status=503, code=20503, message="Service Unavailable")

    # When the credentials are checked, Then a non-field error asks to try again
    with pytest.raises(ValidationError) as raised:
        twilio_credentials_check(account_sid=account_sid, auth_token=auth_token)
    assert NON_FIELD_ERRORS in raised.value.message_dict


# --- inbound webhook fields -----------------------------------------------------------


def _inbound_form(session, **fields) -> dict[str, str]:
    return {
        "MessageSid": new_sid("SM"),
        "SmsMessageSid": new_sid("SM"),
        "AccountSid": session.twilio_account_sid,
        "From": f"whatsapp:{CUSTOMER}",
        "To": f"whatsapp:{session.twilio_from_number}",
        "WaId": CUSTOMER.lstrip("+"),
        "ProfileName": "Dana",
        "NumMedia": "0",
        "Body": "",
        **fields,
    }


def test_inbound_text_becomes_a_text_message(make_twilio_session):
    # Given Twilio's webhook fields for a text
    session = make_twilio_session()
    form = _inbound_form(session, Body="I'd like a pizza")

    # When they are parsed
    message = twilio_inbound_parse(form, session=session)

    # Then it is a text from the customer, in a direct chat
    assert message.provider_message_id == form["MessageSid"]
    assert message.kind == MessageKind.TEXT
    assert (message.sender, message.chat) == (CUSTOMER, CUSTOMER)
    assert message.text == "I'd like a pizza"
    assert message.push_name == "Dana"
    assert message.timestamp is not None and message.timestamp.tzinfo is not None
    assert not message.is_group and message.media is None


def test_inbound_image_with_caption_downloads_with_the_session_credentials(
    make_twilio_session, standin
):
    # Given an inbound image with a caption, whose media Twilio serves
    session = make_twilio_session()
    media_url = standin.add_media(session.twilio_account_sid, b"\xff\xd8jpeg", "image/jpeg")
    form = _inbound_form(
        session,
        Body="The broken one",
        NumMedia="1",
        MediaUrl0=media_url,
        MediaContentType0="image/jpeg",
    )

    # When it is parsed and its media downloaded
    message = twilio_inbound_parse(form, session=session)
    content = message.media.download()

    # Then it is an image with the caption, and the bytes came with the session's auth
    assert message.kind == MessageKind.IMAGE
    assert message.media.mime_type == "image/jpeg"
    assert message.media.caption == "The broken one"
    assert message.media.url == media_url
    assert content == b"\xff\xd8jpeg"
    (request,) = standin.requests
    assert request.path == media_url.removeprefix("https://api.twilio.com")
    assert (request.auth_user, request.auth_password) == (
        session.twilio_account_sid,
        _token(session),
    )


def test_inbound_media_kind_follows_the_content_type(make_twilio_session):
    # Given media of several content types
    session = make_twilio_session()
    expected = {
        "video/mp4": MessageKind.VIDEO,
        "audio/ogg; codecs=opus": MessageKind.AUDIO,
        "application/pdf": MessageKind.DOCUMENT,
        "image/webp": MessageKind.STICKER,
    }
    for content_type, kind in expected.items():
        form = _inbound_form(
            session,
            NumMedia="1",
            MediaUrl0=f"https://api.twilio.com/2010-04-01/Accounts/{session.twilio_account_sid}"
            f"/Messages/{new_sid('MM')}/Media/{new_sid('ME')}",
            MediaContentType0=content_type,
        )
        # When parsed, Then the kind matches
        assert twilio_inbound_parse(form, session=session).kind == kind, content_type


def test_inbound_media_refuses_to_send_credentials_outside_twilio(make_twilio_session):
    # Given a webhook whose media URL is not Twilio's
    session = make_twilio_session()
    form = _inbound_form(
        session,
        NumMedia="1",
        MediaUrl0="https://attacker.example.com/steal",
        MediaContentType0="image/png",
    )

    # When its media is downloaded, Then the credentials are not sent there
    message = twilio_inbound_parse(form, session=session)
    with pytest.raises(NeverRetry):
        message.media.download()


def test_inbound_location_becomes_a_location_message(make_twilio_session):
    # Given a shared location
    session = make_twilio_session()
    form = _inbound_form(
        session, Latitude="32.0853", Longitude="34.7818", Label="Home", Address="Dizengoff 1"
    )

    # When it is parsed
    message = twilio_inbound_parse(form, session=session)

    # Then it is a location with its place
    assert message.kind == MessageKind.LOCATION
    assert message.location == Location(
        latitude=32.0853, longitude=34.7818, name="Home", address="Dizengoff 1"
    )


def test_inbound_reply_keeps_the_quoted_message_id(make_twilio_session):
    # Given a reply to an earlier message
    session = make_twilio_session()
    quoted = new_sid("SM")
    form = _inbound_form(session, Body="yes, that one", OriginalRepliedMessageSid=quoted)

    # When it is parsed, Then reply_to_id names the quoted message
    message = twilio_inbound_parse(form, session=session)
    assert message.reply_to_id == quoted
    assert message.text == "yes, that one"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"MessageSid": ""}, "MessageSid"),
        ({"From": ""}, "From"),
        ({"From": "whatsapp:not-a-number"}, "From"),
        ({"NumMedia": "many"}, "NumMedia"),
        ({"NumMedia": "1"}, "MediaUrl0"),
        ({"Latitude": "north", "Longitude": "34.7"}, "Latitude"),
        ({"Latitude": "32.1"}, "Longitude"),
    ],
)
def test_malformed_inbound_fields_raise_value_error(make_twilio_session, change, complaint):
    # Given webhook fields with something wrong
    session = make_twilio_session()
    form = {
        key: value for key, value in _inbound_form(session, Body="x", **change).items() if value
    }

    # When they are parsed, Then a ValueError says what
    with pytest.raises(ValueError, match=complaint):
        twilio_inbound_parse(form, session=session)


def test_non_mapping_inbound_fields_raise_value_error():
    # When something that is not a form is parsed, Then it is a ValueError
    with pytest.raises(ValueError):
        twilio_inbound_parse(["MessageSid"], session=None)


# --- delivery reports -----------------------------------------------------------------


def test_status_callback_becomes_a_twilio_status():
    # Given status callbacks for a delivered and a failed message
    delivered = {"MessageSid": "SM1", "MessageStatus": "delivered", "SmsStatus": "delivered"}
    failed = {"MessageSid": "SM2", "MessageStatus": "undelivered", "ErrorCode": "63016"}
    read = {"SmsSid": "SM3", "SmsStatus": "read", "ErrorCode": ""}

    # When they are parsed, Then each gives the SID, the status and the error code
    assert twilio_status_parse(delivered) == TwilioStatus("SM1", "delivered", None)
    assert twilio_status_parse(failed) == TwilioStatus("SM2", "undelivered", 63016)
    assert twilio_status_parse(read) == TwilioStatus("SM3", "read", None)
    # And Twilio's in-between statuses count as queued
    assert twilio_status_parse({"MessageSid": "SM4", "MessageStatus": "sending"}).status == (
        "queued"
    )


@pytest.mark.parametrize(
    "form",
    [
        {"MessageStatus": "sent"},
        {"MessageSid": "SM1", "MessageStatus": "exploded"},
        {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "oops"},
        {"MessageSid": "SM1"},
    ],
)
def test_malformed_status_callback_raises_value_error(form):
    with pytest.raises(ValueError):
        twilio_status_parse(form)
