from __future__ import annotations

from rest_framework import pagination


class CursorPagination(pagination.CursorPagination):
    """Opaque cursors over an indexed ordering: the cost of a page never grows with the table."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-pk"
