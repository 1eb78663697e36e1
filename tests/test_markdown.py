"""What a model writes becomes HTML that cannot run, reach outside its reply, or load anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat import markdown
from tests.dom import parse

CORPUS = json.loads((Path(__file__).parent / "data" / "markdown_corpus.json").read_text())
HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<div hx-get="/admin/" hx-trigger="load">x</div>',
    '<span id="m-12-body" hx-swap-oob="true">taken over</span>',
    '<div data-hx-post="/c/new/" ws-send>x</div>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "<javascript:alert(1)>",
    '<a href="javascript:alert(1)">html link</a>',
    "[rel](/admin/logout/) and [proto](//evil.example/x)",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![pixel](https://tracker.example/p.gif)",
    '![x](javascript:alert(1) "t")',
    '<svg><script>alert(1)</script><circle onload="alert(1)"/></svg>',
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
    '<iframe src="https://evil.example"></iframe><object data="x"></object><embed src="x">',
    '<form action="/c/new/"><input name="text" value="x"><button>go</button></form>',
    '<p style="position:fixed;inset:0">cover</p><style>body{display:none}</style>',
    '<a name="x" id="chat-state">anchors</a><base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    "<!-- a comment --> <b>unclosed <i>tags",
    "```html\n<script>alert(1)</script>\n```",
    '```"><img src=x onerror=alert(1)>\ncode\n```',
    "| <img src=x onerror=alert(1)> | [x](javascript:alert(1)) |\n|---|---|\n| a | b |",
    "- [ ] <input type=checkbox checked>\n- [x] done",
    "[ref]\n\n[ref]: javascript:alert(1)",
    '<details open ontoggle="alert(1)"><summary>x</summary></details>',
]
FORBIDDEN_TAGS = {
    "script",
    "style",
    "iframe",
    "object",
    "embed",
    "form",
    "input",
    "img",
    "svg",
    "math",
    "base",
}
FORBIDDEN_TAGS |= {"meta", "link", "textarea", "select", "details", "frame", "frameset", "template", "video"}


def assert_harmless(html: str) -> None:
    for element in parse(html).walk():
        if element.tag == "#fragment":
            continue
        if element.tag == "button":  # the Copy button of a code block is ours, and only that
            assert element.attrs == {"type": "button", "class": "copy-code"}
            assert element.parent is not None and element.parent.attrs.get("class") == "code-head"
            continue
        assert element.tag in markdown.ALLOWED_TAGS, f"tag <{element.tag}> in {html!r}"
        assert element.tag not in FORBIDDEN_TAGS
        for name in element.attrs:
            assert name in markdown.ALLOWED_ATTRIBUTES.get(element.tag, set()) | {"target", "rel"}, name
            assert not name.startswith(("on", "hx-", "data-", "ws-")) and name not in {"style", "id", "name"}
        if element.tag == "a":
            assert element.attrs.get("target") == "_blank"
            assert element.attrs.get("rel") == "noopener noreferrer nofollow"
            href = element.attrs.get("href")
            assert href is None or href.split(":", 1)[0].lower() in {"http", "https", "mailto"}, href


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_markdown_renders_to_harmless_html(text):
    html = markdown.render(text)
    assert_harmless(html)
    assert "alert(1)" not in "".join(element.attrs.get("href", "") for element in parse(html).walk())


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_html_given_straight_to_the_sanitizer_is_harmless(text):
    assert_harmless(markdown.sanitize(text))


@pytest.mark.parametrize("text", [text for texts in CORPUS.values() for text in texts])
def test_every_corpus_text_renders_to_harmless_html(text):
    assert_harmless(markdown.render(text))


fragments = st.sampled_from(
    ["<", ">", "&", '"', "'", "`", "```", "\n", "\n\n", "[", "]", "(", ")", "!", "*", "_", "-", "|", " ",
     "javascript:", "on", "error=", "hx-", "script", "img", "a href=", "://", "#", ">"]
)  # fmt: skip


@settings(max_examples=300)
@given(st.lists(fragments | st.sampled_from(HOSTILE), max_size=30).map("".join))
def test_any_mix_of_hostile_pieces_renders_to_harmless_html(text):
    assert_harmless(markdown.render(text))


def test_raw_html_is_shown_as_text():
    assert markdown.render("<b>bold?</b>") == "<p>&lt;b&gt;bold?&lt;/b&gt;</p>\n"


def test_images_are_links_and_never_loaded():
    html = markdown.render("![a chart](https://example.com/chart.png)")
    assert "<img" not in html
    assert 'href="https://example.com/chart.png"' in html and "Image: a chart" in html


def test_links_open_in_a_new_tab_without_referrer():
    html = markdown.render("[docs](https://example.com/docs) and https://example.org")
    assert html.count('target="_blank" rel="noopener noreferrer nofollow"') == 2


def test_a_known_language_is_highlighted_with_its_name_and_a_copy_button():
    html = markdown.render("```python\ndef f(): return 1\n```")
    assert '<span class="code-lang">python</span>' in html
    assert '<button type="button" class="copy-code">Copy</button>' in html
    assert '<span class="k">def</span>' in html


@pytest.mark.parametrize("fence", ["```\nprint('x')\n```", "```nosuchlanguage\nprint('x')\n```"])
def test_unknown_or_missing_language_is_plain_code_never_guessed(fence):
    html = markdown.render(fence)
    assert "<span class=" not in html.replace('<span class="code-lang">', "")
    assert "print(&#x27;x&#x27;)" in html or "print('x')" in html


def test_tables_strikethrough_and_task_lists():
    html = markdown.render("| a | b |\n|:--|--:|\n| 1 | 2 |\n\n~~old~~\n\n- [x] done\n- [ ] todo")
    assert '<th class="align-left">a</th>' in html and '<td class="align-right">2</td>' in html
    assert "<s>old</s>" in html
    assert 'aria-label="Done">☑</span> done' in html and 'aria-label="Not done">☐</span> todo' in html
    assert "<input" not in html


def test_the_code_colours_in_the_stylesheet_are_the_ones_pygments_makes():
    css = (Path(__file__).parent.parent / "static" / "chat" / "markdown.css").read_text()
    generated = css.split("/* code-styles: start */\n", 1)[1].split("/* code-styles: end */", 1)[0]
    assert generated == markdown.code_styles()
    # Dark code follows the system unless the user chose light, and follows a chosen dark theme.
    system_dark = generated.split("@media (prefers-color-scheme: dark) {\n", 1)[1].split("\n}\n", 1)[0]
    assert '  :root:not([data-theme="light"]) .highlight .k { color: #FF7B72 }' in system_dark
    assert ':root[data-theme="dark"] .highlight .k { color: #FF7B72 }' in generated
    assert "\npre {" not in generated  # nothing outside code blocks
