"""Bulk sends (messaging/bulk.py): a job run by a real Celery worker through the real
twilio SDK to the local Twilio stand-in; steps run in this process where the test needs
to see each one (signals, delays, reruns)."""

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django_tenants.utils import schema_context

from messaging.bulk import (
    bulk_item_key,
    bulk_send_create,
    bulk_send_progress,
    bulk_send_progressed,
    bulk_send_step,
)
from messaging.models import BulkSend, Message
from tests.conftest import wait_until
from tests.test_outbound import _sandbox
from tests.test_outbound import twilio as twilio

RECIPIENTS = [f"+97250{n:07d}" for n in range(1000001, 1000005)]


def _job(schema: str, job: BulkSend) -> BulkSend:
    with schema_context(schema):
        return BulkSend.objects.get(pk=job.pk)


def _steps_until_idle(schema: str, job: BulkSend, *, at_most: int = 50) -> list[float | None]:
    """Run the job's steps here, as a worker would, until one asks to wait (or it ends)."""
    answers = []
    with schema_context(schema):
        for _ in range(at_most):
            answers.append(bulk_send_step(job_id=job.pk))
            if answers[-1] != 0.0:
                return answers
    return answers


def _created_here(**kwargs) -> BulkSend:
    """bulk_send_create without its after-commit start: the test runs the steps itself
    (a worker running them too would race it)."""
    with transaction.atomic():
        job = bulk_send_create(**kwargs)
        connection.run_on_commit.clear()
    return job


@pytest.fixture
def signals():
    received = []

    def receiver(sender, *, job, final, **kwargs):
        received.append((sender, bulk_send_progress(job), final))

    bulk_send_progressed.connect(receiver, dispatch_uid="test-bulk")
    yield received
    bulk_send_progressed.disconnect(dispatch_uid="test-bulk")


def test_a_bulk_send_goes_out_through_a_worker_once_per_item(twilio):
    # Given a job of four good items and one refused number
    items = [{"to": phone, "text": f"Today's special, {i}"} for i, phone in enumerate(RECIPIENTS)]
    items.append({"to": "not a phone", "text": "Never sent"})
    with schema_context(twilio.schema):
        job = bulk_send_create(
            session=twilio.session, items=items, origin="api", notify={"email": "x@y.z"}
        )

    # When a worker runs it to the end
    done = wait_until(
        lambda: (j := _job(twilio.schema, job)).state == "done" and j,
        timeout=60,
        what="the bulk send to finish",
    )

    # Then each good item reached Twilio once, and the job counts them
    assert sorted(r.field("To") for r in twilio.requests()) == [
        f"whatsapp:{phone}" for phone in RECIPIENTS
    ]
    progress = bulk_send_progress(done)
    assert {k: progress[k] for k in ("total", "handed_out", "queued", "sent", "failed")} == {
        "total": 5,
        "handed_out": 5,
        "queued": 0,
        "sent": 4,
        "failed": 1,
    }
    assert progress["errors"][0]["index"] == 4 and "to" in progress["errors"][0]["errors"]
    assert done.started_at and done.finished_at and done.notify == {"email": "x@y.z"}
    with schema_context(twilio.schema):
        keys = set(Message.objects.filter(bulk_send=done).values_list("idempotency_key", flat=True))
    assert keys == {bulk_item_key(done, index) for index in range(4)}


def test_running_a_finished_job_again_sends_nothing_twice(twilio):
    # Given a job a worker finished
    with schema_context(twilio.schema):
        job = bulk_send_create(
            session=twilio.session,
            items=[{"to": phone, "text": "Open tonight"} for phone in RECIPIENTS[:3]],
            origin="owner_menu",
        )
    wait_until(lambda: _job(twilio.schema, job).state == "done", timeout=60, what="the job")
    assert len(twilio.requests()) == 3

    # When the whole job runs again from its first item (a redelivered task, a restore)
    with schema_context(twilio.schema):
        BulkSend.objects.filter(pk=job.pk).update(state="running", next_index=0)
    _steps_until_idle(twilio.schema, job)

    # Then no message was created or sent a second time
    with schema_context(twilio.schema):
        assert Message.objects.filter(direction="out").count() == 3
    again = _job(twilio.schema, job)
    assert again.state == "done" and again.sent == 3 and again.next_index == 3
    assert len(twilio.requests()) == 3 and len(twilio.created()) == 3


def test_progress_is_signalled_after_each_chunk_and_once_at_the_end(make_tenant, signals):
    # Given a sandbox session nobody runs (its messages stay queued)
    tenant = make_tenant()
    session = _sandbox(tenant)
    with schema_context(tenant.schema_name):
        job = _created_here(
            session=session,
            items=[{"to": f"+97252{n:07d}", "text": "Hello"} for n in range(120)],
            origin="api",
        )

        # When its steps run: 50 items per chunk, then it waits for the messages to go
        answers = _steps_until_idle(tenant.schema_name, job)

        # Then one signal per chunk, none final while messages are queued
        assert answers[:2] == [0.0, 0.0] and answers[2] > 0
        assert [(p["handed_out"], p["queued"], final) for _, p, final in signals] == [
            (50, 50, False),
            (100, 100, False),
            (120, 120, False),
        ]
        assert {sender for sender, _, _ in signals} == {BulkSend}

        # And when its messages have gone out, the next step ends it with a final signal
        Message.objects.filter(bulk_send=job).update(status="sent")
        assert bulk_send_step(job_id=job.pk) is None
    assert signals[-1][2] is True and signals[-1][1]["state"] == "done"
    assert signals[-1][1]["sent"] == 120
    assert _job(tenant.schema_name, job).state == "done"


def test_an_item_with_a_delay_waits_for_it(make_tenant):
    tenant = make_tenant()
    session = _sandbox(tenant)
    with schema_context(tenant.schema_name):
        job = _created_here(
            session=session,
            items=[
                {"to": RECIPIENTS[0], "text": "Now"},
                {"to": RECIPIENTS[1], "text": "In an hour", "delay_seconds": 3600},
            ],
            origin="owner_menu",
        )

        wait = bulk_send_step(job_id=job.pk)

        # the first went out, the second waits about an hour (a countdown, not a worker)
        assert 3500 < wait <= 3600
        assert _job(tenant.schema_name, job).next_index == 1
        assert list(Message.objects.values_list("text", flat=True)) == ["Now"]


def test_a_job_whose_session_is_gone_fails_with_a_final_signal(make_tenant, signals):
    tenant = make_tenant()
    session = _sandbox(tenant)
    with schema_context(tenant.schema_name):
        job = _created_here(session=session, items=[{"to": RECIPIENTS[0]}], origin="api")
    session.delete()
    with schema_context(tenant.schema_name):
        assert bulk_send_step(job_id=job.pk) is None
    failed = _job(tenant.schema_name, job)
    assert failed.state == "failed" and "session" in failed.last_error
    assert signals[-1][2] is True


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"items": []}, "items"),
        ({"items": "+972501234567"}, "items"),
        ({"items": [{"text": "no number"}]}, "items"),
        ({"items": [{"to": RECIPIENTS[0], "body": "wrong field"}]}, "items"),
        ({"items": [{"to": RECIPIENTS[0], "delay_seconds": -1}]}, "items"),
        ({"items": [{"to": RECIPIENTS[0], "text": object()}]}, "items"),
        ({"origin": ""}, "origin"),
        ({"notify": ["not", "a", "mapping"]}, "notify"),
    ],
)
def test_a_bad_job_is_refused_by_field_and_nothing_is_stored(make_tenant, kwargs, field):
    tenant = make_tenant()
    session = _sandbox(tenant)
    arguments = {"items": [{"to": RECIPIENTS[0], "text": "Hi"}], "origin": "api", **kwargs}
    with schema_context(tenant.schema_name):
        with pytest.raises(ValidationError) as raised:
            bulk_send_create(session=session, **arguments)
        assert field in raised.value.message_dict
        assert not BulkSend.objects.exists()


def test_a_session_of_another_tenant_cannot_run_a_job(make_tenant):
    mine, theirs = make_tenant(), make_tenant()
    session = _sandbox(theirs)
    with schema_context(mine.schema_name), pytest.raises(ValidationError) as raised:
        bulk_send_create(session=session, items=[{"to": RECIPIENTS[0]}], origin="api")
    assert "session" in raised.value.message_dict
