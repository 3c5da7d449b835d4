"""Services the API and the dashboard share: session update/delete with the Twilio
credentials check (real twilio SDK against the local stand-in), and API keys."""

import hashlib
import uuid

import pytest
from django.core.exceptions import ValidationError

from sessions_app import leases
from sessions_app.models import WhatsAppSession
from sessions_app.services import session_create, session_delete, session_update
from tenants.api_keys import api_key_authenticate, api_key_create, api_key_revoke
from tenants.models import ApiKey


def _number() -> str:
    return f"+1415{uuid.uuid4().int % 10**7:07d}"


def _account_fetches(standin, sid: str) -> list:
    return [r for r in standin.requests_to(f"/Accounts/{sid}.json") if r.method == "GET"]


def _twilio(tenant, standin, **fields) -> WhatsAppSession:
    sid, token = standin.add_account()
    return session_create(
        tenant=tenant,
        name=fields.pop("name", f"Twilio {uuid.uuid4().hex[:6]}"),
        provider="twilio",
        twilio_account_sid=sid,
        twilio_auth_token=token,
        twilio_from_number=_number(),
        **fields,
    )


# --- the Twilio credentials check on create and update --------------------------------


def test_create_asks_twilio_for_the_account_with_the_given_credentials(make_tenant, twilio_standin):
    # Given an account Twilio knows
    sid, token = twilio_standin.add_account()

    # When a Twilio session is created with its credentials
    session = session_create(
        tenant=make_tenant(),
        name="Twilio",
        provider="twilio",
        twilio_account_sid=sid,
        twilio_auth_token=token,
        twilio_from_number=_number(),
    )

    # Then the SDK fetched the account with them, and the session was saved
    (fetch,) = _account_fetches(twilio_standin, sid)
    assert (fetch.auth_user, fetch.auth_password) == (sid, token)
    assert WhatsAppSession.objects.filter(pk=session.pk).exists()


def test_create_with_a_token_twilio_refuses_saves_nothing_and_blames_the_token(
    make_tenant, twilio_standin
):
    # Given an account, and a wrong token for it
    tenant = make_tenant()
    sid, _ = twilio_standin.add_account()

    # When a session is created with them
    with pytest.raises(ValidationError) as raised:
        session_create(
            tenant=tenant,
            name="Twilio",
            provider="twilio",
            twilio_account_sid=sid,
            twilio_auth_token="b" * 32,
            twilio_from_number=_number(),
        )

    # Then the token field says so, and nothing was saved
    assert "20003" in raised.value.message_dict["twilio_auth_token"][0]
    assert not WhatsAppSession.objects.filter(tenant=tenant).exists()


def test_create_reports_field_errors_and_a_refused_token_together(make_tenant, twilio_standin):
    # Given a session name already taken, and a wrong token
    tenant = make_tenant()
    session_create(tenant=tenant, name="Main", provider="sandbox")
    sid, _ = twilio_standin.add_account()

    # When a Twilio session is created with both problems
    with pytest.raises(ValidationError) as raised:
        session_create(
            tenant=tenant,
            name="Main",
            provider="twilio",
            twilio_account_sid=sid,
            twilio_auth_token="c" * 32,
            twilio_from_number=_number(),
        )

    # Then both come back at once
    assert {"name", "twilio_auth_token"} <= set(raised.value.message_dict)


def test_update_changes_only_the_given_fields(make_tenant):
    # Given a sandbox session
    session = session_create(
        tenant=make_tenant(), name="Main", provider="sandbox", owner_numbers=["+972501234567"]
    )

    # When its name and mode change
    updated = session_update(session=session, name="Front desk", customer_mode="ordering")

    # Then those changed, the rest did not
    fresh = WhatsAppSession.objects.get(pk=session.pk)
    assert (fresh.name, fresh.customer_mode) == ("Front desk", "ordering")
    assert fresh.owner_numbers == ["+972501234567"]
    assert updated.name == "Front desk"


def test_update_validates_like_create_with_every_error_by_field(make_tenant):
    # Given two sessions of one tenant
    tenant = make_tenant()
    session_create(tenant=tenant, name="Other", provider="sandbox")
    session = session_create(tenant=tenant, name="Main", provider="sandbox")

    # When one is given a taken name, a bad owner number, a bad mode and the provider
    with pytest.raises(ValidationError) as raised:
        session_update(
            session=session,
            name="Other",
            owner_numbers=["12"],
            customer_mode="loud",
            provider="twilio",
        )

    # Then every problem is named by its field, and nothing changed
    assert set(raised.value.message_dict) == {"name", "owner_numbers", "customer_mode", "provider"}
    assert WhatsAppSession.objects.get(pk=session.pk).name == "Main"


def test_update_with_a_new_token_twilio_refuses_keeps_the_old_one(make_tenant, twilio_standin):
    # Given a Twilio session with working credentials
    session = _twilio(make_tenant(), twilio_standin)
    old_token = str(session.twilio_auth_token)

    # When the token is changed to one Twilio refuses
    with pytest.raises(ValidationError) as raised:
        session_update(session=session, twilio_auth_token="d" * 32)

    # Then the token field says so and the stored token is still the old one
    assert "twilio_auth_token" in raised.value.message_dict
    assert WhatsAppSession.objects.get(pk=session.pk).twilio_auth_token == old_token


def test_update_with_a_new_valid_token_checks_it_then_stores_it(make_tenant, twilio_standin):
    # Given a Twilio session, and its account's token rotated at Twilio
    session = _twilio(make_tenant(), twilio_standin)
    sid = session.twilio_account_sid
    twilio_standin.add_account(sid, "e" * 32)
    before = len(_account_fetches(twilio_standin, sid))

    # When the new token is given
    session_update(session=session, twilio_auth_token="e" * 32)

    # Then Twilio was asked with it, and it is stored
    assert len(_account_fetches(twilio_standin, sid)) == before + 1
    assert _account_fetches(twilio_standin, sid)[-1].auth_password == "e" * 32
    assert WhatsAppSession.objects.get(pk=session.pk).twilio_auth_token == "e" * 32


def test_update_without_new_credentials_does_not_ask_twilio(make_tenant, twilio_standin):
    # Given a Twilio session
    session = _twilio(make_tenant(), twilio_standin)
    before = len(twilio_standin.requests)

    # When only its name changes, with the token left empty as a form leaves it
    session_update(session=session, name="Renamed", twilio_auth_token="")

    # Then Twilio was not asked, and the token is kept
    assert len(twilio_standin.requests) == before
    fresh = WhatsAppSession.objects.get(pk=session.pk)
    assert fresh.name == "Renamed"
    assert fresh.twilio_auth_token == str(session.twilio_auth_token)


def test_delete_removes_a_stopped_session(make_tenant):
    session = session_create(tenant=make_tenant(), name="Main", provider="sandbox")

    session_delete(session=session)

    assert not WhatsAppSession.objects.filter(pk=session.pk).exists()


def test_delete_refuses_a_session_a_runner_still_holds(make_tenant):
    # Given a sandbox session whose lease a runner holds
    session = session_create(tenant=make_tenant(), name="Main", provider="sandbox")
    assert leases.lease_acquire(session.pk, "some-runner")
    try:
        # When it is deleted, Then it is refused and kept
        with pytest.raises(ValidationError) as raised:
            session_delete(session=session)
        assert "status" in raised.value.message_dict
        assert WhatsAppSession.objects.filter(pk=session.pk).exists()
    finally:
        leases.lease_release(session.pk, "some-runner")


# --- API keys -------------------------------------------------------------------------


def test_a_key_is_stored_only_as_a_hash_with_a_visible_prefix(make_tenant):
    # When a key is created
    key, raw = api_key_create(tenant=make_tenant(), name="POS", scopes=["read", "send"])

    # Then the row has its hash and first characters, never the key itself
    stored = ApiKey.objects.get(pk=key.pk)
    assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(stored.prefix) and len(stored.prefix) < len(raw) // 3
    assert raw not in repr(stored.__dict__)
    assert stored.scopes == ["read", "send"]


def test_key_creation_reports_a_missing_name_and_unknown_scopes(make_tenant):
    with pytest.raises(ValidationError) as raised:
        api_key_create(tenant=make_tenant(), name=" ", scopes=["read", "admin"])
    assert set(raised.value.message_dict) == {"name", "scopes"}


def test_a_key_authenticates_only_on_its_own_tenant(make_tenant):
    # Given a key of one tenant
    mine, other = make_tenant(), make_tenant()
    key, raw = api_key_create(tenant=mine, name="POS", scopes=["read"])

    # Then it is found on its tenant, and not at all on another one (as a wrong key)
    assert api_key_authenticate(tenant=mine, raw_key=raw).pk == key.pk
    assert api_key_authenticate(tenant=other, raw_key=raw) is None
    assert api_key_authenticate(tenant=mine, raw_key=raw + "x") is None


def test_a_revoked_key_no_longer_authenticates(make_tenant):
    tenant = make_tenant()
    key, raw = api_key_create(tenant=tenant, name="POS", scopes=["read"])

    revoked = api_key_revoke(key=key)

    assert revoked.revoked_at is not None
    assert api_key_authenticate(tenant=tenant, raw_key=raw) is None
    assert api_key_revoke(key=key).revoked_at == revoked.revoked_at  # idempotent


def test_using_a_key_records_when(make_tenant):
    tenant = make_tenant()
    key, raw = api_key_create(tenant=tenant, name="POS", scopes=["read"])
    assert key.last_used_at is None

    api_key_authenticate(tenant=tenant, raw_key=raw)

    assert ApiKey.objects.get(pk=key.pk).last_used_at is not None


def test_the_api_keys_command_creates_lists_and_revokes(make_tenant):
    from io import StringIO

    from django.core.management import call_command

    # Given a tenant
    tenant = make_tenant()
    out = StringIO()

    # When a key is created from a terminal
    call_command("api_keys", "create", tenant=tenant.slug, name="Script", scopes="read", stdout=out)

    # Then it is printed once, listed by prefix, and can be revoked
    raw = out.getvalue().split("key: ")[1].split()[0]
    key = ApiKey.objects.get(tenant=tenant)
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest() and key.scopes == ["read"]
    listing = StringIO()
    call_command("api_keys", "list", tenant=tenant.slug, stdout=listing)
    assert key.prefix in listing.getvalue() and raw not in listing.getvalue()
    call_command("api_keys", "revoke", tenant=tenant.slug, prefix=key.prefix, stdout=StringIO())
    assert api_key_authenticate(tenant=tenant, raw_key=raw) is None
