"""URLs of the dashboard on the public host: a new business signs up here."""

from django.urls import path

from dashboard import views

app_name = "signup"

urlpatterns = [
    path("", views.signup, name="form"),
    path("check/", views.signup_check, name="check"),
]
