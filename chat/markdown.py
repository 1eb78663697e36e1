"""Markdown a model writes, as HTML a page can show: rendered, highlighted, then sanitized.

CommonMark with GitHub's tables, strikethrough, task lists and autolinks (markdown-it-py). Raw
HTML in the Markdown is shown as text, never as markup. Fenced code is highlighted by Pygments in
the fence's language when Pygments knows it, else shown plain (no guessing). Images are shown as
links and never loaded (no tracking pixels). Then nh3 keeps only an allow-list of tags and
attributes: no script, style, iframe, object, embed, form or input; no ``on*``, ``style``, ``id``,
``name``, ``hx-*``, ``data-*`` or ``ws-*`` attribute (socket frames target elements by id, so model
output must never carry one); no URL but ``http:``, ``https:`` and ``mailto:``. Links open in a new
tab with ``rel="noopener noreferrer nofollow"``.

``render`` renders a whole text. ``render_block`` renders one top-level block of a longer text
with the link references known so far: ``chat.incremental`` uses it to render a reply block by
block while it streams, to the same HTML.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import nh3
from django.utils.html import escape
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

References = dict[str, Any]

ALLOWED_TAGS = frozenset(
    {
        "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre",
        "blockquote", "ul", "ol", "li", "a", "span", "div", "table", "thead", "tbody", "tr", "th", "td",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title", "class"},
    "span": {"class", "role", "aria-label"},
    "div": {"class"},
    "pre": {"class"},
    "code": {"class"},
    "ol": {"start"},
    "li": {"class"},
    "th": {"class"},
    "td": {"class"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"

_cleaner = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
    url_schemes=set(URL_SCHEMES),
    url_relative="deny",
    link_rel=LINK_REL,
    set_tag_attribute_values={"a": {"target": "_blank"}},
    strip_comments=True,
    clean_content_tags={"script", "style"},
)


_CODE_HEAD_END = '</span></div><pre class="highlight">'
_COPY_BUTTON = '<button type="button" class="copy-code">Copy</button>'


def sanitize(html: str) -> str:
    """Keep only the allow-list above (the last step of every rendering)."""
    return _cleaner.clean(html)


def _with_copy_buttons(html: str) -> str:
    """Each code block's head gets its Copy button, after sanitizing: no button comes from the model."""
    return html.replace(_CODE_HEAD_END, f'</span>{_COPY_BUTTON}</div><pre class="highlight">')


# --- Code blocks ------------------------------------------------------------------------------------

_formatter = HtmlFormatter(nowrap=True)
_LANGUAGE = re.compile(r"[\w#+.-]{1,40}")


@functools.lru_cache(maxsize=256)
def _lexer(language: str) -> Any:
    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def code_block(code: str, language: str) -> str:
    """A code block with its language and a Copy button; highlighted when Pygments knows the language."""
    language = language if _LANGUAGE.fullmatch(language) else ""
    lexer = _lexer(language.lower()) if language else None
    body = highlight(code, lexer, _formatter) if lexer is not None else escape(code)
    label = escape(language) if language else "code"
    return (
        f'<div class="code-block"><div class="code-head"><span class="code-lang">{label}</span></div>'
        f'<pre class="highlight"><code>{body}</code></pre></div>\n'
    )


LIGHT_STYLE, DARK_STYLE = "default", "github-dark"


def code_styles() -> str:
    """The colours of highlighted code: a light style, and a dark one for the dark theme.

    The dark theme is the user's choice (``<html data-theme="dark">``) or, when they chose none, the
    system's (``prefers-color-scheme``), so the dark rules come twice: once under the media query,
    unless the user chose light, and once for the chosen dark theme.
    ``static/chat/markdown.css`` holds this text between its markers (a test keeps them equal).
    """

    def rules(style: str, scope: str) -> list[str]:
        formatter = HtmlFormatter(style=style)
        return [*formatter.get_background_style_defs(scope), *formatter.get_token_style_defs(scope)]

    light = rules(LIGHT_STYLE, ".highlight")
    system_dark = rules(DARK_STYLE, ':root:not([data-theme="light"]) .highlight')
    chosen_dark = rules(DARK_STYLE, ':root[data-theme="dark"] .highlight')
    indented = "\n".join(f"  {line}" for line in system_dark)
    return "\n".join([*light, "@media (prefers-color-scheme: dark) {", indented, "}", *chosen_dark]) + "\n"


# --- The parser and its renderer ---------------------------------------------------------------------


def _fence(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    language = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
    return code_block(token.content, language)


def _code_block(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    return code_block(tokens[idx].content, "")


def _image(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    """An image the model wrote: a link to it, never loaded."""
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or str(token.attrGet("src") or "")
    return f'<a href="{escape(str(token.attrGet("src") or ""))}" class="image-link">Image: {escape(alt)}</a>'


def _cell_open(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """Table cells: alignment as a class, not a ``style`` attribute (no style is ever kept)."""
    token = tokens[idx]
    style = str(token.attrGet("style") or "")
    token.attrs.pop("style", None)
    align = re.search(r"text-align:(left|center|right)", style)
    if align:
        token.attrSet("class", f"align-{align.group(1)}")
    return self.renderToken(tokens, idx, options, env)


_TASK = re.compile(r"\[([ xX])\] ")


def _task_lists(state: StateCore) -> None:
    """``- [ ] todo`` / ``- [x] done``: a box drawn as a character (no form input reaches a page)."""
    tokens = state.tokens
    for index in range(2, len(tokens)):
        inline = tokens[index]
        if (
            inline.type != "inline"
            or tokens[index - 1].type != "paragraph_open"
            or tokens[index - 2].type != "list_item_open"
            or not inline.children
            or inline.children[0].type != "text"
        ):
            continue
        first = inline.children[0]
        match = _TASK.match(first.content)
        if match is None:
            continue
        done = match.group(1) != " "
        first.content = first.content[match.end() :]
        box = Token("html_inline", "", 0)
        label, mark = ("Done", "☑") if done else ("Not done", "☐")
        box.content = f'<span class="task-box" role="img" aria-label="{label}">{mark}</span> '
        inline.children.insert(0, box)
        tokens[index - 2].attrSet("class", "task-list-item")


@functools.cache
def parser() -> MarkdownIt:
    """The one configured Markdown parser (markdown-it-py objects are safe to share once set up)."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False})
    md.enable(["table", "strikethrough", "linkify"])
    md.core.ruler.push("task_lists", _task_lists)
    md.add_render_rule("fence", _fence)
    md.add_render_rule("code_block", _code_block)
    md.add_render_rule("image", _image)
    md.add_render_rule("th_open", _cell_open)
    md.add_render_rule("td_open", _cell_open)
    return md


@functools.cache
def block_parser() -> MarkdownIt:
    """The same parser, stopping at blocks: where blocks start and end, without reading their text.

    Streaming asks this after every completed line, so it skips what only rendering needs.
    """
    md = MarkdownIt("commonmark", {"html": False})
    md.enable(["table", "strikethrough"])
    md.core.ruler.enableOnly(["normalize", "block"])
    return md


def render(text: str) -> str:
    """A whole text as sanitized HTML."""
    if not text:
        return ""
    return _with_copy_buttons(sanitize(parser().render(text)))


def render_block(source: str, references: References) -> str:
    """One top-level block of a longer text, with the references defined so far (updated in place)."""
    md = parser()
    env: dict[str, Any] = {"references": references}
    return _with_copy_buttons(sanitize(md.renderer.render(md.parse(source, env), md.options, env)))


def plain(text: str) -> str:
    """Text shown as it is (a user's message): escaped, its line breaks kept by CSS."""
    return escape(text)
