"""Dashboard forms: they check the shape of the input; services check the rest, and
their errors (by field) are shown on the same form through `service_errors_apply`."""

from __future__ import annotations

import re

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from dashboard.tenant_settings import LIMIT_FIELDS, ORDER_PLAIN_FIELDS
from sessions_app.models import CustomerMode, HumanizationProfile, Provider


def service_errors_apply(form: forms.Form, error: ValidationError, field_map=None) -> None:
    """Put a service's ValidationError on the form: by field when the form has that field
    (after renaming through `field_map`), on the form as a whole otherwise."""
    field_map = field_map or {}
    if hasattr(error, "error_dict"):
        for name, messages in error.message_dict.items():
            field = field_map.get(name, name)
            for message in messages:
                form.add_error(field if field in form.fields else None, message)
    else:
        for message in error.messages:
            form.add_error(None, message)


def split_numbers(value: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,;\n]+", value or "") if part.strip()]


# --- accounts -------------------------------------------------------------------------


class SignupForm(forms.Form):
    name = forms.CharField(label=_("Business name"), max_length=120)
    slug = forms.CharField(
        label=_("Address"),
        max_length=40,
        help_text=_("3 to 40 lowercase letters, digits or hyphens."),
    )
    email = forms.EmailField(label=_("Your email"))
    password = forms.CharField(label=_("Password"), widget=forms.PasswordInput, strip=False)
    language = forms.ChoiceField(label=_("Language"), choices=settings.LANGUAGES, initial="he")

    def clean_slug(self):
        from dashboard.accounts import signup_slug_check

        slug = self.cleaned_data["slug"].strip().lower()
        problems = signup_slug_check(slug=slug)
        if problems:
            raise forms.ValidationError(problems)
        return slug


class StaffInviteForm(forms.Form):
    email = forms.EmailField(label=_("Email"))
    name = forms.CharField(label=_("Name"), max_length=120, required=False)


# --- sessions -------------------------------------------------------------------------


class SessionCreateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=80)
    provider = forms.ChoiceField(label=_("Provider"), choices=Provider.choices)
    owner_numbers = forms.CharField(
        label=_("Owner numbers"),
        required=False,
        help_text=_("Comma-separated, e.g. +972501234567. Only they get the owner menu."),
    )
    customer_mode = forms.ChoiceField(
        label=_("Customers"), choices=CustomerMode.choices, initial=CustomerMode.SILENT
    )
    humanization_profile = forms.ChoiceField(
        label=_("Typing speed"),
        choices=HumanizationProfile.choices,
        initial=HumanizationProfile.NORMAL,
    )
    proxy_host = forms.CharField(label=_("SOCKS5 proxy host"), required=False)
    proxy_port = forms.IntegerField(
        label=_("Proxy port"), required=False, min_value=1, max_value=65535
    )
    proxy_username = forms.CharField(label=_("Proxy user"), required=False)
    proxy_password = forms.CharField(
        label=_("Proxy password"), required=False, widget=forms.PasswordInput, strip=False
    )
    twilio_account_sid = forms.CharField(label=_("Twilio account SID"), required=False)
    twilio_auth_token = forms.CharField(
        label=_("Twilio auth token"), required=False, widget=forms.PasswordInput
    )
    twilio_from_number = forms.CharField(label=_("WhatsApp sender number"), required=False)
    twilio_messaging_service_sid = forms.CharField(label=_("Messaging service SID"), required=False)
    start_now = forms.BooleanField(label=_("Start it now"), required=False, initial=True)

    def service_kwargs(self) -> dict:
        data = dict(self.cleaned_data)
        data.pop("start_now", None)
        data["owner_numbers"] = split_numbers(data.get("owner_numbers", ""))
        return data


class SessionSettingsForm(forms.Form):
    owner_numbers = forms.CharField(
        label=_("Owner numbers"),
        required=False,
        help_text=_("Comma-separated, e.g. +972501234567. Only they get the owner menu."),
    )
    customer_mode = forms.ChoiceField(label=_("Customers"), choices=CustomerMode.choices)
    humanization_profile = forms.ChoiceField(
        label=_("Typing speed"), choices=HumanizationProfile.choices
    )

    def service_kwargs(self) -> dict:
        data = dict(self.cleaned_data)
        data["owner_numbers"] = split_numbers(data.get("owner_numbers", ""))
        return data


class PairingForm(forms.Form):
    phone_number = forms.CharField(label=_("Phone number"), max_length=30)


# --- the phone simulator --------------------------------------------------------------


def _e164(value: str) -> str:
    from sessions_app.phone_numbers import to_e164

    try:
        return to_e164(value)
    except ValidationError as error:
        raise forms.ValidationError(error.messages) from error


class SimulatorWriteForm(forms.Form):
    phone = forms.CharField(label=_("Write as"), max_length=30)
    name = forms.CharField(label=_("Name on the phone"), max_length=80, required=False)
    text = forms.CharField(label=_("Message"), max_length=4096, strip=True)

    def clean_phone(self):
        return _e164(self.cleaned_data["phone"])


class SimulatorScanForm(forms.Form):
    phone = forms.CharField(label=_("Scan as"), max_length=30)
    link = forms.CharField(
        label=_("QR code link"),
        required=False,
        help_text=_("Empty: the code shown right now."),
    )

    def clean_phone(self):
        return _e164(self.cleaned_data["phone"])


# --- settings -------------------------------------------------------------------------


class WebhookEndpointForm(forms.Form):
    url = forms.CharField(label=_("URL"), max_length=500)
    events = forms.MultipleChoiceField(
        label=_("Events"), widget=forms.CheckboxSelectMultiple, choices=()
    )
    description = forms.CharField(label=_("Description"), max_length=200, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from messaging.models import WebhookEndpoint

        self.fields["events"].choices = WebhookEndpoint.Event.choices


class LimitsForm(forms.ModelForm):
    class Meta:
        from messaging.models import MessagingSettings

        model = MessagingSettings
        fields = list(LIMIT_FIELDS)
        labels = {
            "limits_enabled": _("Limits on"),
            "outbound_per_tenant_per_minute": _("Messages sent a minute (whole business)"),
            "outbound_per_recipient_per_minute": _("Messages a minute to one person"),
            "outbound_burst": _("Messages in a row to one person"),
            "outbound_burst_cooldown_seconds": _("Pause after a burst (seconds)"),
            "outbound_daily_per_session": _("Messages a day per number"),
            "duplicate_window_seconds": _("Same text to the same person: window (seconds)"),
            "inbound_per_customer_per_minute": _("Messages a minute from one customer"),
            "inbound_pause_minutes": _("Pause for a customer over the limit (minutes)"),
            "inbound_per_tenant_per_minute": _("Messages received a minute (whole business)"),
        }


WEEKDAY_LABELS = (
    _("Monday"),
    _("Tuesday"),
    _("Wednesday"),
    _("Thursday"),
    _("Friday"),
    _("Saturday"),
    _("Sunday"),
)


class OrderSettingsForm(forms.Form):
    """The ordering settings; opening hours as one text field per weekday."""

    rating_delay_minutes = forms.IntegerField(
        label=_("Ask for a rating this many minutes after delivery"), min_value=0, max_value=10080
    )
    confirmed_too_long_minutes = forms.IntegerField(
        label=_("Mark an order late after this many minutes confirmed"),
        min_value=1,
        max_value=10080,
    )
    promo_text = forms.CharField(
        label=_("Thank-you text for ratings of 4-5"),
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    apology_text = forms.CharField(
        label=_("Apology text for ratings of 1-3"),
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    support_contact = forms.CharField(label=_("Support contact"), max_length=120, required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for day, label in enumerate(WEEKDAY_LABELS):
            self.fields[f"hours_{day}"] = forms.CharField(
                label=label,
                required=False,
                max_length=200,
                help_text=_("e.g. 09:00-14:00, 18:00-23:00; empty: closed"),
            )

    @staticmethod
    def initial_from(settings) -> dict:
        initial = {name: getattr(settings, name) for name in ORDER_PLAIN_FIELDS}
        for day in range(7):
            ranges = (settings.opening_hours or {}).get(str(day), [])
            initial[f"hours_{day}"] = ", ".join(f"{start}-{end}" for start, end in ranges)
        return initial

    def hours_texts(self) -> dict[str, str]:
        return {str(day): self.cleaned_data.get(f"hours_{day}", "") for day in range(7)}


class ApiKeyForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=80)
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"), widget=forms.CheckboxSelectMultiple, choices=()
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from tenants.models import ApiKey

        self.fields["scopes"].choices = ApiKey.Scope.choices


class MenuItemForm(forms.Form):
    name_he = forms.CharField(label=_("Name (Hebrew)"), max_length=120)
    name_en = forms.CharField(label=_("Name (English)"), max_length=120, required=False)
    name_ar = forms.CharField(label=_("Name (Arabic)"), max_length=120, required=False)
    description_he = forms.CharField(
        label=_("Description (Hebrew)"), max_length=300, required=False
    )
    description_en = forms.CharField(
        label=_("Description (English)"), max_length=300, required=False
    )
    description_ar = forms.CharField(
        label=_("Description (Arabic)"), max_length=300, required=False
    )
    price = forms.DecimalField(label=_("Price"), min_value=0, max_digits=10, decimal_places=3)
    category = forms.CharField(label=_("Category"), max_length=60, required=False)
    available = forms.BooleanField(label=_("Available"), required=False, initial=True)
    sort_order = forms.IntegerField(label=_("Position"), initial=0, required=False)

    def __init__(self, *args, currency: str = "ILS", **kwargs):
        super().__init__(*args, **kwargs)
        self.currency = currency

    def clean_price(self):
        from orders.money import minor_exponent

        price = self.cleaned_data["price"]
        exponent = minor_exponent(self.currency)
        minor = price.scaleb(exponent)
        if minor != minor.to_integral_value():
            raise forms.ValidationError(
                _("Use at most %(digits)s digits after the point.") % {"digits": exponent}
            )
        return price

    def service_kwargs(self) -> dict:
        from orders.money import minor_exponent

        data = dict(self.cleaned_data)
        price = data.pop("price")
        data["price_minor"] = int(price.scaleb(minor_exponent(self.currency)))
        data["sort_order"] = data.get("sort_order") or 0
        return data

    @staticmethod
    def initial_from(item) -> dict:
        from orders.money import money_decimal

        initial = {
            name: getattr(item, name)
            for name in (
                "name_he",
                "name_en",
                "name_ar",
                "description_he",
                "description_en",
                "description_ar",
                "category",
                "available",
                "sort_order",
            )
        }
        from orders.models import OrderSettings

        initial["price"] = money_decimal(item.price_minor, OrderSettings.current().currency)
        return initial
