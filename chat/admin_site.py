"""The admin site: Django's, with the site's sign-in throttling on its login page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest, HttpResponse

from chat.account_views import ThrottledSignIn, respond_to_lockout


class AdminSignInForm(ThrottledSignIn, AdminAuthenticationForm):
    """The admin's sign-in form, counted and locked out with the site's own."""


class ChatAdminSite(admin.AdminSite):
    login_form = AdminSignInForm

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return respond_to_lockout(super().login(request, extra_context))
