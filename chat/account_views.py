"""Pages about one's account: usage and limits; sign-up by invite or with approval."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from chat import accounts, limits, login_throttle, sidebar, usage


@login_required
@require_GET
def usage_page(request: HttpRequest) -> HttpResponse:
    """What the user has used, per day and model, and the limits that apply to them."""
    mine = usage.user_usage(request.user.pk, days=30)
    applied = limits.limits_for(request.user.pk)
    context = {
        "usage": mine,
        "limits": limits.describe(applied),
        "sidebar": sidebar.page(user=request.user),
    }
    return render(request, "chat/usage.html", context)


class ThrottledSignIn:
    """A sign-in form that counts each try before its password is checked, and refuses over the limits.

    ``lockout`` says which limit refused it (``respond_to_lockout`` makes the page a 429).
    """

    lockout: login_throttle.Lockout | None = None

    def clean(self) -> dict:
        username = self.cleaned_data.get("username") or ""
        if not (username and self.cleaned_data.get("password")):
            return super().clean()  # nothing to check: the form says what is missing
        address = login_throttle.address_of(self.request)
        self.lockout = login_throttle.attempt(username, address)
        if self.lockout is not None:
            raise ValidationError(self.lockout.message, code="throttled")
        cleaned = super().clean()  # a wrong password raises: the try stays counted
        login_throttle.succeeded(username, address)
        return cleaned


def respond_to_lockout(response: HttpResponse) -> HttpResponse:
    """The sign-in page as rendered, with status 429 and ``Retry-After`` when a lockout refused it."""
    form = (getattr(response, "context_data", None) or {}).get("form")
    lockout = getattr(form, "lockout", None)
    if lockout is not None:
        response.status_code = 429
        response["Retry-After"] = str(lockout.retry_after)
    return response


class SignInForm(ThrottledSignIn, AuthenticationForm):
    """The sign-in form, which tells an account still waiting for approval so (given its password)."""

    WAITING = "Your account is waiting for an administrator's approval."

    def clean(self) -> dict:
        try:
            return super().clean()
        except ValidationError:
            if self.lockout is not None:
                raise
            username = self.cleaned_data.get("username") or ""
            password = self.cleaned_data.get("password") or ""
            if accounts.waiting_for_approval(username):
                user = get_user_model().objects.get(username=username)
                if user.check_password(password):
                    raise ValidationError(self.WAITING, code="waiting") from None
            raise


class SignupForm(UserCreationForm):
    """A username, an optional email (for password resets) and a password typed twice."""

    email = forms.EmailField(required=False, help_text="Optional; needed to reset a forgotten password.")

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """Ask for an account (sign-up mode "approval"); other modes say how accounts are made."""
    mode = accounts.signup_mode()
    if mode != "approval":
        return render(request, "registration/signup.html", {"mode": mode}, status=403)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        accounts.request_account(
            username=form.cleaned_data["username"],
            password=form.cleaned_data["password1"],
            email=form.cleaned_data["email"],
        )
        return render(request, "registration/signup.html", {"mode": mode, "requested": True})
    status = 400 if request.method == "POST" else 200
    return render(request, "registration/signup.html", {"mode": mode, "form": form}, status=status)


@require_http_methods(["GET", "POST"])
def invite(request: HttpRequest, token: str) -> HttpResponse:
    """Create an account from an invite link: once, before it expires, in any sign-up mode."""
    problem = accounts.invite_problem(token)
    if problem is not None:
        return render(request, "registration/invite.html", {"problem": problem}, status=410)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = accounts.signup_with_invite(
                token=token,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
                email=form.cleaned_data["email"],
            )
        except ValidationError as exc:  # used by someone else a moment ago
            return render(request, "registration/invite.html", {"problem": exc.messages[0]}, status=410)
        login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
        return redirect("chat:home")
    status = 400 if request.method == "POST" else 200
    return render(request, "registration/invite.html", {"form": form}, status=status)
