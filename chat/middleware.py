"""Requests the app refuses before any view sees them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
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


@sync_and_async_middleware
def refuse_nul_in_query(get_response: Callable) -> Callable:
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            refusal = _nul_in_query(request)
            if refusal is not None:
                return refusal
            response: Awaitable[HttpResponse] = get_response(request)
            return await response

    else:

        def middleware(request: HttpRequest) -> HttpResponse:
            return _nul_in_query(request) or get_response(request)

    return middleware
