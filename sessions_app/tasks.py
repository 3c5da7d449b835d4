from celery import shared_task

from sessions_app.alerts import session_alert_send


@shared_task(
    name="sessions.session_alert", autoretry_for=(OSError,), retry_backoff=30, max_retries=5
)
def session_alert(session_id: int) -> int:
    """Email the owners about a session that needs them (SMTP errors are retried)."""
    return session_alert_send(session_id=session_id)
