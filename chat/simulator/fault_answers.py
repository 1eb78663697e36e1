"""What a request gets instead of a completion: a provider's error statuses, a proxy's or a portal's page."""

from __future__ import annotations

from chat.simulator.plan import _Plan
from chat.simulator.wire import _HttpError, _json, _openai_error, _reason


def _status_error(status: int, model: str) -> _HttpError:
    """What a real provider says for each status, so the app's messages can be tested against it."""
    headers: dict[str, str] = {}
    if status == 401:
        message, type_, code = "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
    elif status == 403:
        message, type_, code = "You are not allowed to use this model.", "invalid_request_error", "forbidden"
    elif status == 404:
        message, type_, code = (
            f"The model `{model}` does not exist.",
            "invalid_request_error",
            "model_not_found",
        )
    elif status == 429:
        message, type_, code = "Rate limit reached.", "requests", "rate_limit_exceeded"
        headers["Retry-After"] = "7"
    elif status >= 500:
        message, type_, code = "The server had an error while processing your request.", "server_error", None
    else:
        message, type_, code = f"{_reason(status)}.", "invalid_request_error", None
    return _HttpError(status, message, error_type=type_, code=code, headers=headers)


def _retry_status_error(status: int, model: str, plan: _Plan) -> _HttpError:
    """``_status_error`` with the plan's ``retry_after`` / ``retry_after_ms`` on a 429 or 503."""
    error = _status_error(status, model)
    if status in {429, 503}:
        if plan.retry_after_ms is not None:
            error.headers.pop("Retry-After", None)
            error.headers["retry-after-ms"] = plan.retry_after_ms
        if plan.retry_after is not None:
            error.headers["Retry-After"] = plan.retry_after
    return error


_CONTEXT_LENGTH_MESSAGE = (
    "This model's maximum context length is 8192 tokens. However, your messages resulted in 9001 tokens. "
    "Please reduce the length of the messages."
)
_PROXY_TEXT = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
_STREAM_OPTIONS_REJECTED = "Unrecognized request argument supplied: stream_options"


def _answer_error(plan: _Plan, model: str) -> _HttpError | None:
    """The error status a plan answers with instead of a completion, if any; the first that applies wins."""
    if plan.status == 400 and plan.context_length:
        body = _openai_error(
            _CONTEXT_LENGTH_MESSAGE, "invalid_request_error", "messages", "context_length_exceeded"
        )
        return _HttpError(400, _CONTEXT_LENGTH_MESSAGE, body=body)
    if plan.status is not None:
        return _retry_status_error(plan.status, model, plan)
    if plan.html_status is not None:
        code = plan.html_status
        page = _HTML_PAGE.format(code=code, reason=_reason(code))
        return _HttpError(code, page, body=page.encode(), content_type="text/html")
    if plan.detail_status is not None:
        code = plan.detail_status
        detail = "Invalid model parameters." if code < 500 else "Model is loading, please retry."
        return _HttpError(code, detail, body=_json({"detail": detail}))
    if plan.text_status is not None:
        return _HttpError(plan.text_status, _PROXY_TEXT, body=_PROXY_TEXT.encode(), content_type="text/plain")
    return None


_HTML_PAGE = (
    "<html><head><title>{code} {reason}</title></head>"
    "<body><h1>{code} {reason}</h1><script>alert(1)</script></body></html>"
)
_PORTAL_PAGE = (
    "<!DOCTYPE html><html><head><title>Sign in to Wi-Fi</title></head>"
    "<body><h1>Welcome to Airport Free Wi-Fi</h1><p>Please accept the terms to continue.</p>"
    '<form method="post"><button>Accept</button></form></body></html>'
)
