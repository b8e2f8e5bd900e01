from __future__ import annotations

from django import template

from controlsite.audit.events import event_label as label_for

register = template.Library()


@register.filter
def event_label(code: str) -> str:
    """`{{ event.event_type|event_label }}` → "Role granted"."""
    return label_for(code)
