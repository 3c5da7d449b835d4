"""Fault drills (issue 9): kill and restart the product's processes and servers during
traffic; nothing is lost and nothing is sent twice.

The drills run once for this module, in a child process (tests/drill_harness.py), on a
PostgreSQL and a Redis of their own that they may stop and start -- never the servers
the rest of the suite shares. Each test checks one drill's row; the table of every row
is printed at the end of the pytest run.
"""

from __future__ import annotations

import pytest

from tests.drill_harness import BATCH, DRILLS, DrillRow, run_in_child, table

pytestmark = pytest.mark.integration

DRILLS_TIMEOUT_SECONDS = 900


class _DrillTable:
    """A pytest plugin: prints the drills' table in the terminal summary."""

    def __init__(self, rows: list[DrillRow], output: str):
        self.rows, self.output = rows, output

    def pytest_terminal_summary(self, terminalreporter):
        terminalreporter.section("fault drills")
        if self.rows:
            terminalreporter.write_line(table(self.rows))
        else:
            terminalreporter.write_line("no drill ran:\n" + self.output[-3000:])


@pytest.fixture(scope="module")
def drills(request, tmp_path_factory) -> dict[str, DrillRow]:
    out = tmp_path_factory.mktemp("drills") / "rows.json"
    rows, output = run_in_child(out, timeout=DRILLS_TIMEOUT_SECONDS, capture=True)
    request.config.pluginmanager.register(_DrillTable(rows, output), "fault-drills-table")
    by_name = {row.drill: row for row in rows}
    missing = [name for name in DRILLS if name not in by_name]
    assert not missing, f"drills {missing} did not run:\n{output[-5000:]}"
    return by_name


def _nothing_lost_nor_doubled(row: DrillRow) -> None:
    assert "crashed" not in row.details, row.details
    assert row.duplicates == 0, row
    assert row.losses == 0, row


def test_a_killed_worker_s_batch_is_all_sent_by_the_next_worker(drills):
    row = drills["worker_kill"]
    assert "crashed" not in row.details, row.details
    assert 0 < row.details["sent_before_kill"] < BATCH, row  # killed in the middle
    assert row.details["killed_during_a_request"], row
    assert row.losses == 0, row
    assert row.stored == row.sent == row.messages_in == BATCH
    assert row.details["rows_sent"] == BATCH  # and every row says so


def test_a_killed_worker_s_batch_is_sent_no_more_than_once(drills):
    row = drills["worker_kill"]
    assert row.details["killed_during_a_request"], row
    assert row.duplicates == 0, row


def test_a_redis_restart_loses_no_inbound_message_and_sends_resume(drills):
    row = drills["redis_restart"]
    answers = row.details["answers"]
    assert set(answers) - {"200"}, row  # the restart was felt: some webhooks were refused
    assert "crashed" not in row.details, row.details
    assert row.duplicates == 0, row
    assert row.stored == row.messages_in  # every inbound message stored once, whatever else
    if row.losses and row.details.get("celery_reconnect_bug"):
        # Celery's consumer broke while reconnecting (README: Fault drills, known issue):
        # nothing is lost -- stored and queued -- but this worker moves nothing more.
        pytest.xfail(f"celery/celery#8030: the worker stopped consuming ({row.losses} waiting)")
    _nothing_lost_nor_doubled(row)
    assert row.stored == row.messages_in
    assert row.details["given_up"] == 0


def test_a_postgres_restart_answers_503_for_what_was_not_stored_and_recovers(drills):
    row = drills["postgres_restart"]
    answers = row.details["answers"]
    assert answers.get("503"), row  # the restart was felt
    assert set(answers) <= {"200", "503"}, row  # never a 500, never a dropped connection
    assert row.details["acked_not_stored"] == 0, row  # no 200 for a message not stored
    assert "crashed" not in row.details, row.details
    assert row.losses == 0, row
    assert row.details["duplicates_in"] == 0, row
    # A send Twilio accepted just before the database went away is not recorded; its
    # next delivery asks Twilio (messaging/send_marks.py) and records it, never sends it
    # again.
    assert row.details["duplicates_out"] == 0, row
    assert row.stored == row.messages_in
    assert row.details["given_up"] == 0


def test_a_killed_runner_s_session_moves_and_its_pending_sends_go_out_once(drills):
    row = drills["runner_kill"]
    assert 0 < row.details["sent_before_kill"] < BATCH, row
    assert row.details["taken_over_by"] not in (None, row.details["killed"]), row
    _nothing_lost_nor_doubled(row)
    assert row.stored == row.sent == BATCH
    assert row.details["rows_sent"] == BATCH


def test_a_flooding_customer_is_paused_once_and_the_others_are_served(drills):
    row = drills["customer_flood"]
    details = row.details
    assert details["flooder_notices"] == 1, details
    assert details["flooder_paused"], details
    # answered up to the limit, and no more (the rest stored, not answered)
    assert 0 < details["flooder_messages_answered"] <= details["limit_per_minute"], details
    assert details["other_customers_served"] == details["other_customers"], details
    _nothing_lost_nor_doubled(row)
    assert row.stored == row.messages_in  # paused, yet stored
