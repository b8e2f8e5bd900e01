"""Section bodies are Markdown, rendered the same way on the page and in the PDF.

Raw HTML in the source is never passed through: markdown-it escapes it (``html=False``), and the
result is cleaned again with nh3 against a short allow-list, so a ``<script>`` or an
``onerror=`` written into a section is inert text wherever it is shown.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "code", "pre", "blockquote",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td", "a", "s",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "th": {"style"}, "td": {"style"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"]
    )


def render_markdown(source: str) -> SafeString:
    """Markdown → safe HTML. Headings inside a section start at level 3 (the section title is
    level 2), so a section cannot break the document's outline or bookmarks."""
    html = _parser().render(source or "")
    for level in range(6, 0, -1):
        shifted = min(level + 2, 6)
        html = html.replace(f"<h{level}>", f"<h{shifted}>")
        html = html.replace(f"</h{level}>", f"</h{shifted}>")
    cleaned = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        filter_style_properties={"text-align"},
    )
    return mark_safe(cleaned)  # noqa: S308  (escaped by markdown-it, cleaned by nh3 above)
