"""Settings and menu pages (owners only). Each form posts to its own URL and calls one
service; secrets (webhook signing secrets, API keys) are shown once, in the answer to
the request that created them, and never stored anywhere they could be shown again."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from dashboard.access import owner_required
from dashboard.forms import (
    ApiKeyForm,
    LimitsForm,
    MenuItemForm,
    OrderSettingsForm,
    SessionSettingsForm,
    WebhookEndpointForm,
    service_errors_apply,
)
from dashboard.tenant_settings import (
    ORDER_PLAIN_FIELDS,
    messaging_limits_update,
    opening_hours_parse,
    order_settings_update,
)
from messaging import webhooks
from messaging.models import MessagingSettings, WebhookDelivery, WebhookEndpoint
from orders.models import MenuItem, OrderSettings
from orders.money import money_format
from orders.services import (
    menu_item_create,
    menu_item_delete,
    menu_item_update,
    ordering_bot_pause_set,
)
from sessions_app.models import WhatsAppSession
from tenants.api_keys import api_key_create, api_key_revoke, api_keys_of
from tenants.models import ApiKey

DELIVERY_PAGE = 50


def _settings_page(request, *, status=200, **overrides):
    order_settings = OrderSettings.current()
    context = {
        "order_settings": order_settings,
        "order_form": OrderSettingsForm(initial=OrderSettingsForm.initial_from(order_settings)),
        "limits_form": LimitsForm(instance=MessagingSettings.current()),
        "session_forms": _session_forms(request),
        "endpoints": WebhookEndpoint.objects.order_by("created_at"),
        "endpoint_form": WebhookEndpointForm(),
        "api_keys": api_keys_of(tenant=request.tenant),
        "api_key_form": ApiKeyForm(),
        "new_secret": None,
        "new_api_key": None,
    }
    context.update(overrides)
    return render(request, "dashboard/settings.html", context, status=status)


@owner_required
@require_GET
def settings_page(request):
    return _settings_page(request)


@owner_required
@require_POST
def settings_ordering(request):
    form = OrderSettingsForm(request.POST)
    if form.is_valid():
        try:
            hours = opening_hours_parse(form.hours_texts())
            values = {name: form.cleaned_data[name] for name in ORDER_PLAIN_FIELDS}
            order_settings_update(values={**values, "opening_hours": hours})
        except ValidationError as error:
            service_errors_apply(form, error)
        else:
            messages.success(request, _("Ordering settings saved."))
            return redirect("dashboard:settings")
    return _settings_page(request, status=400, order_form=form)


@owner_required
@require_POST
def settings_bot_pause(request):
    paused = request.POST.get("paused") == "1"
    ordering_bot_pause_set(paused=paused, actor_kind="owner", actor_label=request.user.email)
    messages.success(
        request, _("The ordering bot is paused.") if paused else _("The ordering bot is on.")
    )
    return redirect("dashboard:settings")


@owner_required
@require_POST
def settings_limits(request):
    form = LimitsForm(request.POST, instance=MessagingSettings.current())
    if form.is_valid():
        try:
            messaging_limits_update(values=dict(form.cleaned_data))
        except ValidationError as error:
            service_errors_apply(form, error)
        else:
            messages.success(request, _("Limits saved."))
            return redirect("dashboard:settings")
    return _settings_page(request, status=400, limits_form=form)


@owner_required
@require_POST
def settings_session(request, public_id):
    from sessions_app.services import session_update

    session = get_object_or_404(WhatsAppSession, tenant=request.tenant, public_id=public_id)
    form = SessionSettingsForm(request.POST, prefix=f"s{session.pk}")
    if form.is_valid():
        try:
            session_update(session=session, **form.service_kwargs())
        except ValidationError as error:
            service_errors_apply(form, error)
        else:
            messages.success(request, _("%(name)s saved.") % {"name": session.name})
            return redirect("dashboard:settings")
    forms_ = [(s, form if s.pk == session.pk else f) for s, f in _session_forms(request)]
    return _settings_page(request, status=400, session_forms=forms_)


def _session_forms(request):
    sessions = WhatsAppSession.objects.filter(tenant=request.tenant).order_by("created_at", "id")
    return [
        (
            session,
            SessionSettingsForm(
                initial={
                    "owner_numbers": ", ".join(session.owner_numbers),
                    "customer_mode": session.customer_mode,
                    "humanization_profile": session.humanization_profile,
                },
                prefix=f"s{session.pk}",
            ),
        )
        for session in sessions
    ]


# --- outgoing webhooks -----------------------------------------------------------------


@owner_required
@require_POST
def webhook_add(request):
    form = WebhookEndpointForm(request.POST)
    if form.is_valid():
        try:
            endpoint, secret = webhooks.webhook_endpoint_create(**form.cleaned_data)
        except ValidationError as error:
            service_errors_apply(form, error)
        else:
            return _settings_page(request, status=201, new_secret=(endpoint, secret))
    return _settings_page(request, status=400, endpoint_form=form)


def _endpoint(endpoint_id) -> WebhookEndpoint:
    return get_object_or_404(WebhookEndpoint, pk=endpoint_id)


@owner_required
@require_POST
def webhook_action(request, endpoint_id, action):
    endpoint = _endpoint(endpoint_id)
    try:
        if action == "toggle":
            webhooks.webhook_endpoint_update(endpoint=endpoint, is_active=not endpoint.is_active)
            messages.success(request, _("Endpoint updated."))
        elif action == "test":
            webhooks.webhook_endpoint_test(endpoint=endpoint)
            messages.success(request, _("Test delivery queued: see the delivery log."))
        elif action == "rotate":
            secret = webhooks.webhook_endpoint_secret_rotate(endpoint=endpoint)
            return _settings_page(request, new_secret=(endpoint, secret))
        elif action == "delete":
            webhooks.webhook_endpoint_delete(endpoint=endpoint)
            messages.success(request, _("Endpoint deleted."))
        else:
            return redirect("dashboard:settings")
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    return redirect("dashboard:settings")


@owner_required
@require_GET
def webhook_deliveries(request, endpoint_id):
    endpoint = _endpoint(endpoint_id)
    state = request.GET.get("state") or None
    if state not in WebhookDelivery.State.values:
        state = None
    before = None
    cursor = request.GET.get("before", "")
    if cursor:
        stamp, _sep, row_id = cursor.partition("_")
        try:
            when = parse_datetime(stamp)
            before = (when, int(row_id)) if when is not None else None
        except ValueError:
            before = None
    rows = list(
        webhooks.webhook_deliveries(endpoint, state=state, before=before)[: DELIVERY_PAGE + 1]
    )
    next_cursor = None
    if len(rows) > DELIVERY_PAGE:
        rows = rows[:DELIVERY_PAGE]
        last = rows[-1]
        next_cursor = f"{last.created_at.isoformat()}_{last.pk}"
    return render(
        request,
        "dashboard/webhook_deliveries.html",
        {"endpoint": endpoint, "deliveries": rows, "next_cursor": next_cursor, "state": state},
    )


# --- API keys --------------------------------------------------------------------------


@owner_required
@require_POST
def api_key_add(request):
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            key, raw = api_key_create(
                tenant=request.tenant,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                created_by=request.user.email,
            )
        except ValidationError as error:
            service_errors_apply(form, error)
        else:
            return _settings_page(request, status=201, new_api_key=(key, raw))
    return _settings_page(request, status=400, api_key_form=form)


@owner_required
@require_POST
def api_key_remove(request, key_id):
    key = get_object_or_404(ApiKey, pk=key_id, tenant=request.tenant)
    api_key_revoke(key=key)
    messages.success(request, _("Key %(prefix)s… revoked.") % {"prefix": key.prefix})
    return redirect("dashboard:settings")


# --- menu ------------------------------------------------------------------------------


def _currency() -> str:
    return OrderSettings.current().currency


@owner_required
def menu(request):
    currency = _currency()
    form = MenuItemForm(currency=currency)
    status = 200
    if request.method == "POST":
        form = MenuItemForm(request.POST, currency=currency)
        if form.is_valid():
            try:
                item = menu_item_create(**form.service_kwargs())
            except ValidationError as error:
                service_errors_apply(form, error, {"price_minor": "price"})
            else:
                messages.success(request, _("%(name)s added.") % {"name": item.name_he})
                return redirect("dashboard:menu")
        status = 400
    items = list(MenuItem.objects.order_by("category", "sort_order", "id"))
    for item in items:
        item.price_display = money_format(item.price_minor, currency)
    return render(
        request,
        "dashboard/menu.html",
        {"form": form, "items": items, "currency": currency},
        status=status,
    )


@owner_required
def menu_item_edit(request, item_id):
    item = get_object_or_404(MenuItem, pk=item_id)
    currency = _currency()
    if request.method == "POST":
        form = MenuItemForm(request.POST, currency=currency)
        if form.is_valid():
            try:
                menu_item_update(item=item, **form.service_kwargs())
            except ValidationError as error:
                service_errors_apply(form, error, {"price_minor": "price"})
            else:
                messages.success(request, _("%(name)s saved.") % {"name": item.name_he})
                return redirect("dashboard:menu")
        return render(request, "dashboard/menu_item.html", {"form": form, "item": item}, status=400)
    form = MenuItemForm(initial=MenuItemForm.initial_from(item), currency=currency)
    return render(request, "dashboard/menu_item.html", {"form": form, "item": item})


@owner_required
@require_POST
def menu_item_action(request, item_id, action):
    item = get_object_or_404(MenuItem, pk=item_id)
    if action == "toggle":
        menu_item_update(item=item, available=not item.available)
        messages.success(request, _("%(name)s updated.") % {"name": item.name_he})
    elif action == "delete":
        menu_item_delete(item=item)
        messages.success(request, _("%(name)s deleted.") % {"name": item.name_he})
    return redirect("dashboard:menu")
