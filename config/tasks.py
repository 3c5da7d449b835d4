from celery import shared_task
from django.contrib.auth import get_user_model
from django.db import connection


@shared_task(name="config.health_probe", ignore_result=False)  # /health/?deep=1 waits on it
def health_probe() -> dict:
    """A round trip through the broker and a worker, in the caller's tenant schema.

    `/health/?deep=1` uses it; it reports the schema the task ran in and the number of
    dashboard users visible there, which proves the tenant travelled with the task.
    """
    return {
        "schema": connection.schema_name,
        "users": get_user_model().objects.count(),
    }
