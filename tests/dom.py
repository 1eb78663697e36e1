"""A page as the tests see it: a small DOM that applies socket frames the way htmx swaps them.

htmx swaps every top-level element of a frame that has ``hx-swap-oob`` into the element of the page
with the same id: ``true``/``outerHTML`` replaces it, ``innerHTML`` its contents, ``beforeend`` and
``beforebegin`` insert the frame element's children, ``delete`` removes it. ``Document`` does the
same on a tree built with ``html.parser``, so a test can read what a page shows (its HTML, in one
canonical serialization, and its text) after any sequence of frames.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = frozenset({"br", "hr", "img", "input", "meta", "link", "source", "wbr"})


@dataclass(eq=False)
class Element:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Element | str] = field(default_factory=list)
    parent: Element | None = field(default=None, repr=False)

    @property
    def id(self) -> str | None:
        return self.attrs.get("id")

    def inner_html(self) -> str:
        return "".join(_serialize(child) for child in self.children)

    def text(self) -> str:
        return "".join(child if isinstance(child, str) else child.text() for child in self.children)

    def walk(self):
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.walk()

    def find(self, element_id: str) -> Element | None:
        return next((element for element in self.walk() if element.id == element_id), None)

    def find_all(self, tag: str) -> list[Element]:
        return [element for element in self.walk() if element.tag == tag]

    def adopt(self, nodes: list[Element | str], at: int) -> None:
        for node in nodes:
            if isinstance(node, Element):
                node.parent = self
        self.children[at:at] = nodes


def _serialize(node: Element | str) -> str:
    if isinstance(node, str):
        return html.escape(node, quote=False)
    attrs = "".join(f' {name}="{html.escape(value)}"' for name, value in sorted(node.attrs.items()))
    if node.tag in VOID:
        return f"<{node.tag}{attrs}>"
    return f"<{node.tag}{attrs}>{node.inner_html()}</{node.tag}>"


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#fragment")
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs}, parent=self.current)
        self.current.children.append(element)
        if tag not in VOID:
            self.current = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Element(tag, {n: v or "" for n, v in attrs}, parent=self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data: str) -> None:
        children = self.current.children
        if children and isinstance(children[-1], str):
            children[-1] += data
        else:
            children.append(data)


def parse(markup: str) -> Element:
    """A fragment's nodes under a ``#fragment`` root."""
    builder = _Builder()
    builder.feed(markup)
    builder.close()
    return builder.root


def canonical(markup: str) -> str:
    """``markup`` in the one serialization these tests compare (attributes sorted, text re-escaped)."""
    return parse(markup).inner_html()


def visible_text(markup: str) -> str:
    return parse(markup).text()


class Document:
    """The page: a tree that frames are swapped into, by id, as htmx does it."""

    def __init__(self, markup: str = '<div id="messages"></div>') -> None:
        self.root = parse(markup)

    def apply(self, frame: str) -> None:
        for element in [child for child in parse(frame).children if isinstance(child, Element)]:
            swap = element.attrs.pop("hx-swap-oob", None)
            if swap is None:
                continue
            target = self.root.find(element.id or "")
            if target is None or target.parent is None:
                continue  # htmx ignores a swap whose target is not on the page
            siblings = target.parent.children
            where = next(i for i, node in enumerate(siblings) if node is target)
            if swap in ("true", "outerHTML"):
                siblings[where] = element
                element.parent = target.parent
            elif swap == "innerHTML":
                target.children = []
                target.adopt(element.children, 0)
            elif swap == "beforeend":
                target.adopt(element.children, len(target.children))
            elif swap == "beforebegin":
                target.parent.adopt(element.children, where)
            elif swap == "delete":
                del siblings[where]
            else:
                raise AssertionError(f"a frame asks for a swap the tests do not model: {swap!r}")

    def element(self, element_id: str) -> Element | None:
        return self.root.find(element_id)

    def html_of(self, element_id: str) -> str:
        element = self.root.find(element_id)
        assert element is not None, f"no element #{element_id} on the page"
        return element.inner_html()

    def text_of(self, element_id: str) -> str:
        element = self.root.find(element_id)
        return element.text() if element is not None else ""


PAGE = (
    '<div id="messages"></div><div id="chat-state"></div><p id="composer-notice"></p><input id="client-id">'
)


def page_after(frames: list[str]) -> Document:
    """A chat page that was sent ``frames``, in order."""
    page = Document(PAGE)
    for frame in frames:
        page.apply(frame)
    return page


def rendered(text: str) -> str:
    """What a page shows for a reply whose text is ``text``, once it has ended."""
    from chat import markdown

    return canonical(markdown.render(text))


# A frame that grows a streaming reply (appends to, resets or finishes a block of its open tail).
GROWS = re.compile(r"id=m-\d+-(?:r?tail|r?code) hx-swap-oob")


def shown_text(text: str) -> str:
    """The text a browser shows (``textContent``) for a reply whose Markdown is ``text``."""
    from chat import markdown

    return visible_text(markdown.render(text))
