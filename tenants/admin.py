"""The platform admin (public host): operators list, create and suspend tenants."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from tenants.models import Domain, Tenant
from tenants.services import (
    NewTenant,
    tenant_create,
    tenant_host,
    tenant_reactivate,
    tenant_suspend,
    tenant_validate,
)


class TenantCreateForm(forms.ModelForm):
    owner_email = forms.EmailField(help_text="The first owner's login for the dashboard.")
    owner_password = forms.CharField(widget=forms.PasswordInput(render_value=False))

    class Meta:
        model = Tenant
        fields = ["name", "slug", "timezone", "language"]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            tenant_validate(self.new_tenant())
        except ValidationError as error:
            for field, problems in error.message_dict.items():
                self.add_error(field if field in self.fields else None, problems)
        return data

    def new_tenant(self) -> NewTenant:
        data = self.cleaned_data
        return NewTenant(
            slug=data["slug"],
            name=data["name"],
            owner_email=data["owner_email"],
            owner_password=data["owner_password"],
            timezone=data["timezone"],
            language=data["language"],
        )

    def _post_clean(self):
        # Skip the model's own unique checks: tenant_validate says it better.
        pass


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0
    fields = ["domain", "is_primary"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "host", "is_active", "language", "timezone", "created_at"]
    list_filter = ["is_active", "language"]
    search_fields = ["name", "slug"]
    actions = ["suspend", "reactivate"]
    inlines = [DomainInline]

    def get_queryset(self, request):
        return super().get_queryset(request).exclude(schema_name="public")

    @admin.display(description="Address")
    def host(self, tenant):
        return tenant_host(tenant.slug)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = TenantCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "slug", "timezone", "language", "owner_email", "owner_password"]
        return [
            "name",
            "slug",
            "schema_name",
            "timezone",
            "language",
            "is_active",
            "suspended_reason",
        ]

    def get_readonly_fields(self, request, obj=None):
        return ["slug", "schema_name"] if obj else []

    def get_inlines(self, request, obj):
        return self.inlines if obj else []

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        created = tenant_create(form.new_tenant())
        obj.pk = created.pk
        obj.schema_name = created.schema_name

    def save_related(self, request, form, formsets, change):
        if change:
            super().save_related(request, form, formsets, change)

    def has_delete_permission(self, request, obj=None):
        return False  # suspend instead: deleting drops the tenant's schema and all its data

    @admin.action(description="Suspend the selected tenants")
    def suspend(self, request, queryset):
        for tenant in queryset:
            tenant_suspend(tenant=tenant, reason=f"Suspended by {request.user.email}")
        self.message_user(request, f"{queryset.count()} tenant(s) suspended.", messages.SUCCESS)

    @admin.action(description="Reactivate the selected tenants")
    def reactivate(self, request, queryset):
        for tenant in queryset:
            tenant_reactivate(tenant=tenant)
        self.message_user(request, f"{queryset.count()} tenant(s) reactivated.", messages.SUCCESS)
