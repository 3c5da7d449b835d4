"""The platform admin's view of sessions: status and history, never a secret."""

from django.contrib import admin

from sessions_app.models import SessionStatusChange, WhatsAppSession

SECRET_FIELDS = ("twilio_auth_token", "proxy_password", "qr_payload", "pairing_code")


class StatusChangeInline(admin.TabularInline):
    model = SessionStatusChange
    extra = 0
    can_delete = False
    readonly_fields = ("created_at", "from_status", "to_status", "reason")
    fields = readonly_fields
    ordering = ("-created_at",)

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WhatsAppSession)
class WhatsAppSessionAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "tenant",
        "provider",
        "status",
        "desired_state",
        "phone_number",
        "last_heartbeat_at",
        "reconnect_attempts",
    )
    list_filter = ("provider", "status", "desired_state")
    search_fields = ("name", "phone_number", "tenant__slug")
    exclude = SECRET_FIELDS
    readonly_fields = (
        "public_id",
        "tenant",
        "provider",
        "status",
        "qr_expires_at",
        "device_jid",
        "last_disconnect_reason",
        "last_heartbeat_at",
        "banned_until",
        "created_at",
        "updated_at",
    )
    inlines = [StatusChangeInline]

    def has_add_permission(self, request):
        return False  # tenants add sessions from their dashboard
