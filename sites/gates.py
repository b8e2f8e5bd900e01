"""The sites app's release gate: the site can manufacture (design §5; SO-02)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from controlsite.gates import Finding, Severity
from sites.selectors import site_can_manufacture


def site_is_active(batch: Any) -> list[Finding]:
    """Block certification of a batch whose site is not active (checked at this moment)."""
    site = batch.site
    if site_can_manufacture(site):
        return []
    site.refresh_from_db(fields=["status"])
    return [
        Finding(
            code="site_not_active",
            severity=Severity.BLOCK,
            message=f"Site {site.code} is {site.get_status_display().lower()}: "
            "nothing made there may be certified.",
            link=reverse("sites:detail", args=[site.code]),
        )
    ]
