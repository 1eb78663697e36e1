"""Requests the app refuses before any view sees them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils.decorators import sync_and_async_middleware

NUL_IN_QUERY = "The address holds a NUL character (%00), which no page here accepts."


def _nul_in_query(request: HttpRequest) -> HttpResponse | None:
    """A 400 for a query string holding NUL.

    PostgreSQL refuses NUL in any text it is asked to compare, so a search or filter holding one
    (``/admin/chat/message/?q=%00``) would otherwise fail inside the database as a 500.
    """
    query = request.META.get("QUERY_STRING", "")
    if "%00" not in query and "\x00" not in query:
        return None
    for key, values in request.GET.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            return HttpResponseBadRequest(NUL_IN_QUERY, content_type="text/plain; charset=utf-8")
    return None


def _before_view(check: Callable[[HttpRequest], HttpResponse | None], get_response: Callable) -> Callable:
    """Middleware that runs ``check`` on each request first; a response it returns answers instead."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            refusal = check(request)
            if refusal is not None:
                return refusal
            response: Awaitable[HttpResponse] = get_response(request)
            return await response

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            refusal = check(request)
            return refusal if refusal is not None else get_response(request)

    return middleware


@sync_and_async_middleware
def refuse_nul_in_query(get_response: Callable) -> Callable:
    return _before_view(_nul_in_query, get_response)


def _client_address(request: HttpRequest) -> None:
    """Behind the proxy (``DJANGO_BEHIND_PROXY``), the client is the address it appended last.

    nginx's ``$proxy_add_x_forwarded_for`` appends the address it was reached from to whatever the
    client sent, so only the last entry is the proxy's word; earlier ones are the client's claims.
    """
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    last = forwarded.rpartition(",")[2].strip()
    if last:
        request.META["REMOTE_ADDR"] = last


@sync_and_async_middleware
def client_address(get_response: Callable) -> Callable:
    """Put the client's address in ``REMOTE_ADDR`` (audit log, sign-in throttling, log lines)."""
    if not settings.BEHIND_PROXY:
        raise MiddlewareNotUsed
    return _before_view(_client_address, get_response)
