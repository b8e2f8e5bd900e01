from __future__ import annotations

from typing import Any

from django import template
from django.db import models

from controlsite import record_actions

register = template.Library()


@register.inclusion_tag("includes/record_actions.html", takes_context=True)
def record_actions_for(context: template.Context, record: models.Model) -> dict[str, Any]:
    """`{% record_actions_for batch %}`: the links other apps offer on this record's page."""
    request = context.get("request")
    user = getattr(request, "user", None)
    return {"links": record_actions.links_for(record, user) if user is not None else []}
