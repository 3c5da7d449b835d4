"""Celery tasks of the owner menu: thin, they take ids and call a service."""

from celery import shared_task

from messaging.owner_menu import broadcasts  # noqa: F401  (connects the progress receiver)


@shared_task(name="messaging.owner_reminder_deliver", acks_late=True, ignore_result=True)
def owner_reminder_deliver(reminder_id: int) -> bool:
    """Deliver one reminder at its ETA (tenant schema from the task's headers); harmless
    twice: only a reminder still `scheduled` is sent."""
    from messaging.owner_menu.reminders import reminder_deliver

    return reminder_deliver(reminder_id=reminder_id)


@shared_task(name="messaging.owner_menu_sweep", ignore_result=True)
def owner_menu_sweep_task() -> dict:
    """Run by beat every few seconds, in the public schema."""
    from messaging.owner_menu.sweep import owner_menu_sweep

    return owner_menu_sweep()
