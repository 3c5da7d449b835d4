"""The home page tells owners what needs them: open incidents, owner-menu activity and
lockouts. Staff see none of it."""

from datetime import timedelta

from django.utils import timezone
from django_tenants.utils import schema_context

from messaging.owner_models import OwnerAccount, OwnerAuditEntry
from sessions_app.incidents import incident_open, incident_resolve
from tests.conftest import owner_email
from tests.test_dashboard_pages import make_staff, signed_in


def test_owners_see_open_incidents_and_owner_menu_activity(make_tenant):
    tenant = make_tenant(language="en")
    incident_open(kind="dead_letters", tenant=tenant, subject="messages", summary="12 failed")
    with schema_context(tenant.schema_name):
        owner = OwnerAccount.objects.create(
            phone="+972501234567", locked_until=timezone.now() + timedelta(minutes=4)
        )
        OwnerAuditEntry.objects.create(
            owner=owner, phone=owner.phone, action="lockout", created_at=timezone.now()
        )
    make_staff(tenant)

    page = signed_in(tenant, owner_email(tenant)).get("/").content.decode()
    staff_page = signed_in(tenant, "staff@example.com", "Staff-Password-77!").get("/")

    assert "12 failed" in page and 'data-testid="incidents"' in page
    assert "+972501234567 is locked out" in page
    assert 'data-testid="owner-activity"' in page and "lockout" in page.lower()
    assert "12 failed" not in staff_page.content.decode()
    assert "owner-activity" not in staff_page.content.decode()


def test_a_resolved_incident_leaves_the_page(make_tenant):
    tenant = make_tenant(language="en")
    incident_open(kind="block_rate", tenant=tenant, subject="contacts", summary="7% blocked")
    incident_resolve(kind="block_rate", tenant=tenant, subject="contacts")
    page = signed_in(tenant, owner_email(tenant)).get("/").content.decode()
    assert "7% blocked" not in page
