"""Pages. Thin: access through ``selectors``, writes through ``services`` and ``turns``."""

from __future__ import annotations

import uuid

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from chat import (
    events,
    exporting,
    import_progress,
    importing,
    oversight,
    preferences,
    providers,
    rendering,
    search,
    selectors,
    services,
    sidebar,
    turns,
)
from chat.account_views import SignInForm, respond_to_lockout
from chat.forms import ConversationSettingsForm, FirstAdminForm, ImportForm
from chat.importers import ImportFormatError
from chat.models import Conversation, Message


def _chat_page(
    request: HttpRequest,
    *,
    conversation: Conversation | None,
    draft: str = "",
    notice: str = "",
    settings_form: ConversationSettingsForm | None = None,
    status: int = 200,
    start_at: int | None = None,
) -> HttpResponse:
    messages: list[Message] = []
    if conversation is not None:
        messages = selectors.shown_messages(conversation=conversation, start_at=start_at)
        for message in messages:
            if message.is_streaming:
                turns.live_text(message)
    streaming = any(message.is_streaming for message in messages)
    provider_id, model = (
        (conversation.provider_id, conversation.model) if conversation else (None, settings.CHAT_MODEL)
    )
    if conversation is not None and settings_form is None:
        settings_form = ConversationSettingsForm(conversation=conversation)
    context = {
        "conversation": conversation,
        "sidebar": sidebar.page(user=request.user),
        "messages": messages,
        "model_groups": providers.model_groups(provider_id=provider_id, model=model),
        "selected_model": providers.choice_value(provider_id, model),
        "settings_form": settings_form,
        "demo": settings.CHAT_DEMO,
        "client_id": uuid.uuid4(),
        "max_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        "draft": draft,
        "admin_view": oversight.last_view_of(conversation) if conversation is not None else None,
        "notice": notice,
        "streaming": streaming,
        "version": conversation.version if conversation else 0,
    }
    return render(request, "chat/chat.html", context, status=status)


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return _chat_page(request, conversation=None)


@login_required
@require_GET
async def conversation_detail(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    user = await request.auser()
    conversation = await database_sync_to_async(selectors.conversation_for_user)(user, conversation_id)
    if await turns.sweep(conversation.pk):  # replies left by a dead worker: shown as interrupted
        await conversation.arefresh_from_db()
    start_at = _message_id(request.GET.get("m", ""))
    if start_at is not None and await turns.show_version_of(conversation, start_at):
        await conversation.arefresh_from_db()
    return await database_sync_to_async(_chat_page)(request, conversation=conversation, start_at=start_at)


def _message_id(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


@login_required
@require_GET
def older_messages(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """The page of the branch before ``?before=`` (loaded as the reader scrolls up)."""
    conversation = selectors.conversation_for_user(request.user, conversation_id)
    before = _message_id(request.GET.get("before", ""))
    if before is None:
        return HttpResponse("Which message?", status=400, content_type="text/plain; charset=utf-8")
    messages = selectors.conversation_messages(
        conversation=conversation, latest=selectors.WINDOW, before=before
    )
    return render(request, "chat/_older_page.html", {"messages": messages})


@login_required
@require_POST
async def conversation_create(request: HttpRequest) -> HttpResponse:
    """Start a conversation with its first message; the reply starts before the redirect."""
    user = await request.auser()
    raw_text = request.POST.get("text", "")
    try:
        text, choice = await turns.first_message(raw_text, request.POST.get("model"))
    except ValidationError as exc:
        return await database_sync_to_async(_chat_page)(
            request, conversation=None, draft=raw_text, notice=exc.messages[0], status=400
        )
    try:
        turn = await turns.start_conversation(
            user=user, text=text, model=choice.model, provider_id=choice.provider_id
        )
    except ValidationError as exc:
        return await database_sync_to_async(_chat_page)(
            request, conversation=None, draft=raw_text, notice=exc.messages[0], status=503
        )
    return HttpResponseRedirect(turn.reply.conversation.get_absolute_url(), status=303)


@login_required
@require_http_methods(["GET", "POST"])
def conversation_settings(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """Save the conversation's system prompt, temperature and max tokens (used from its next reply).

    GET gives the settings form alone: a new chat's page fetches it once its conversation exists.
    """
    conversation = selectors.conversation_for_user(request.user, conversation_id)
    if request.method == "GET":
        context = {
            "conversation": conversation,
            "settings_form": ConversationSettingsForm(conversation=conversation),
        }
        return render(request, "chat/chat.html#conversation_settings", context)
    form = ConversationSettingsForm(request.POST, conversation=conversation)
    if form.is_valid():
        try:
            services.conversation_settings_update(conversation=conversation, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return HttpResponseRedirect(conversation.get_absolute_url(), status=303)
    return _chat_page(request, conversation=conversation, settings_form=form, status=400)


@login_required
@require_GET
def conversation_page(request: HttpRequest) -> HttpResponse:
    """The sidebar's next page of conversations, after ``?after=`` (fetched as the reader scrolls)."""
    page = sidebar.page(user=request.user, cursor=request.GET.get("after", ""))
    current = request.GET.get("current", "")
    context = {"sidebar": page, "conversation": {"pk": _uuid_or_none(current)}}
    return render(request, "chat/_sidebar.html", context)


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


@login_required
@require_POST
async def conversation_rename(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """A new title from the user (it wins over the model's); every open page shows it."""
    user = await request.auser()
    conversation = await database_sync_to_async(selectors.conversation_for_user)(user, conversation_id)
    try:
        await database_sync_to_async(services.conversation_rename)(
            conversation=conversation, title=request.POST.get("title")
        )
    except ValidationError as exc:
        return HttpResponse(exc.messages[0], status=400, content_type="text/plain; charset=utf-8")
    frames = await database_sync_to_async(rendering.title_frames)(conversation)
    await events.publish_title(conversation.pk, frames)
    return HttpResponse("".join(frames))


@login_required
@require_POST
async def conversation_delete(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """Delete a conversation for good: its replies stop, and pages open on it say it is gone."""
    user = await request.auser()
    conversation = await database_sync_to_async(selectors.conversation_for_user)(user, conversation_id)
    key = conversation.pk
    streaming = await database_sync_to_async(services.conversation_delete)(conversation=conversation)
    await turns.stop_replies(streaming)
    await events.publish_deleted(key)
    home = reverse("chat:home")
    if request.headers.get("HX-Request"):
        return HttpResponse(status=204, headers={"HX-Redirect": home})
    return HttpResponseRedirect(home, status=303)


@login_required
@require_GET
def search_conversations(request: HttpRequest) -> HttpResponse:
    """Matches in the user's own conversations: the sidebar's live results, or a page without JavaScript."""
    query = " ".join(request.GET.get("q", "").split())[:200]
    hits = search.search(user=request.user, query=query)
    context = {"query": query, "hits": hits}
    if request.headers.get("HX-Request"):
        if not query:
            return HttpResponse("")  # the sidebar's list comes back
        return render(request, "chat/_search_results.html", context)
    context["sidebar"] = sidebar.page(user=request.user)
    return render(request, "chat/search.html", context)


@login_required
@require_GET
def message_source(request: HttpRequest, conversation_id: uuid.UUID, message_id: int) -> HttpResponse:
    """A message's text as written (a reply's Markdown source), for its Copy button."""
    conversation = selectors.conversation_for_user(request.user, conversation_id)
    message = selectors.message_in(conversation=conversation, message_id=message_id)
    response = HttpResponse(message.content, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "private, no-store"
    return response


def _download(body: str, *, content_type: str, name: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "private, no-store"
    return response


_EXPORTS = {
    "md": (exporting.conversation_markdown, "text/markdown; charset=utf-8"),
    "json": (exporting.conversation_json, "application/json"),
}


@login_required
@require_GET
def export_conversation(request: HttpRequest, conversation_id: uuid.UUID, kind: str) -> HttpResponse:
    """``export.md`` (the branch on screen, to read) or ``export.json`` (everything, to import)."""
    conversation = selectors.conversation_for_user(request.user, conversation_id)
    write, content_type = _EXPORTS[kind]
    name = exporting.filename(conversation, kind)
    return _download(write(conversation), content_type=content_type, name=name)


@login_required
@require_GET
async def export_all(request: HttpRequest) -> StreamingHttpResponse:
    """All of the user's conversations in one JSON file, written as it is read (never whole in memory)."""
    user = await request.auser()
    response = StreamingHttpResponse(exporting.export_all_async(user), content_type="application/json")
    response["Content-Disposition"] = 'attachment; filename="conversations.json"'
    response["Cache-Control"] = "private, no-store"
    return response


@login_required
@require_http_methods(["GET", "POST"])
def import_conversations(request: HttpRequest) -> HttpResponse:
    """Another chat product's export file, imported whole or, when it is broken, not at all."""
    form = ImportForm(request.POST or None, request.FILES or None)
    result = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            progress = import_progress.publisher(user_id=request.user.pk, token=form.cleaned_data["progress"])
            try:
                result = importing.import_file(
                    user=request.user, file=form.cleaned_data["file"], progress=progress
                )
                form = ImportForm()
            except ImportFormatError as exc:
                form.add_error("file", str(exc))
        if result is None:
            status = 400
    context = {"form": form, "result": result, "sidebar": sidebar.page(user=request.user)}
    return render(request, "chat/import.html", context, status=status)


@require_http_methods(["GET", "POST"])
def first_run(request: HttpRequest) -> HttpResponse:
    """Create the administrator account on a fresh install; gone once any user exists."""
    if get_user_model().objects.exists():
        raise Http404("Setup is complete.")
    form = FirstAdminForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
        return redirect("chat:home")
    return render(request, "chat/setup.html", {"form": form})


def login_or_first_run(request: HttpRequest) -> HttpResponse:
    """The login page, or the first-run page while no account exists."""
    if not get_user_model().objects.exists():
        return redirect("chat:first_run")
    response = auth_views.LoginView.as_view(redirect_authenticated_user=True, authentication_form=SignInForm)(
        request
    )
    return respond_to_lockout(response)


@login_required
@require_POST
def preferences_theme(request: HttpRequest) -> HttpResponse:
    """Remember the page's theme (the Theme button): 204 for htmx, else back to the page it came from."""
    theme = request.POST.get("theme", "")
    if theme not in preferences.THEMES:
        return HttpResponse("Unknown theme.", status=400, content_type="text/plain; charset=utf-8")
    preferences.theme_set(user=request.user, theme=theme)
    if request.headers.get("HX-Request"):
        return HttpResponse(status=204)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        back = reverse("chat:home")
    return HttpResponseRedirect(back, status=303)
