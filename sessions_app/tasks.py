from celery import shared_task

from sessions_app.alerts import session_alert_send


@shared_task(
    name="sessions.session_alert", autoretry_for=(OSError,), retry_backoff=30, max_retries=5
)
def session_alert(session_id: int) -> int:
    """Email the owners about a session that needs them (SMTP errors are retried)."""
    return session_alert_send(session_id=session_id)


@shared_task(name="sessions.operations_check")
def operations_check() -> dict:
    """Open and resolve incidents read off the data (dead letters, block rate, runners)."""
    from sessions_app.incidents import operations_check as check

    report = check()
    return {"opened": report.opened, "resolved": report.resolved}
