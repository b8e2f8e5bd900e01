"""The master-file app's release gate: the product's master file is effective and lists the
batch's site (design §5; MF-01, MF-02)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from controlsite.gates import Finding, Severity
from masterfile.selectors import effective_version, site_listed_for_product


def master_file_in_force(batch: Any) -> list[Finding]:
    """Block certification unless the product has an effective master file whose site annex
    names the batch's site as a manufacturing site (checked at this moment)."""
    product = getattr(batch, "product", None)
    if product is None:
        return []
    version = effective_version(product)
    if version is None:
        return [
            Finding(
                code="master_file_not_effective",
                severity=Severity.BLOCK,
                message=f"{product.code} has no effective master file: nothing may be made or "
                "certified under it.",
                link=reverse("masterfile:product-detail", args=[product.pk]),
            )
        ]
    if site_listed_for_product(batch.site, product):
        return []
    return [
        Finding(
            code="site_not_listed",
            severity=Severity.BLOCK,
            message=f"Site {batch.site.code} is not a manufacturing site in the annex of "
            f"{product.code}'s effective master file (v{version.number}).",
            link=reverse("masterfile:version-detail", args=[version.pk]),
        )
    ]
