"""Comparability API (issue 8 §8; SO-07, SO-08, SO-09; design §6): reference limits and their
approval with QA's e-signature, each site's statistics against the reference site, the control
chart as SVG, the annual checks with their paired results and signed review, and the signals
that open deviations.

Every read is scoped by a `batches.comparability.selectors` visibility rule, so a record you
may not see is a 404 (a product or site named in a query string, a 400 `unknown_product` /
`unknown_site`), and a site-limited token sees only its sites. Every write is one
`batches.comparability.services` call, which checks the role (403), the lifecycle (409), the
input (400: `limits_inverted`, `invalid_margin`, `unpaired_results`, ...) and the signature
(422), and writes nothing when it refuses. A write parses its body before it fetches the record.
`Idempotency-Key` on any POST makes a retry replay the first answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import django_filters
from django.db import models
from django.db.models import QuerySet
from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import exceptions, mixins, renderers, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from batches.api.filters import YES_NO
from batches.api.serializers import (
    REASON_HELP,
    DecimalInputField,
    DecimalTextField,
    ProductCodeField,
    SignatureBriefSerializer,
    signature_data,
)
from batches.choices import (
    CHECK_OPEN,
    CHECK_PAIRS_MAX,
    JUSTIFICATION_MAX,
    LIMIT_BATCHES_MAX,
    NAME_MAX,
    REASON_MAX,
    CheckStatus,
    ComparabilitySignalKind,
    LimitBasis,
    LimitStatus,
)
from batches.comparability import selectors, services
from batches.comparability.views import chart_of, svg_response
from batches.models import (
    KEY_PATTERN,
    ComparabilityCheck,
    ComparabilitySignal,
    ReferenceLimit,
)
from batches.stats import Verdict
from controlsite.accounts.models import User
from controlsite.api.base import (
    BaseViewSet,
    SignatureInputSerializer,
    StrictSerializer,
    split_reason,
    validated_input,
)
from controlsite.api.fields import NamedChoiceField
from controlsite.api.schema import ProblemSerializer
from controlsite.errors import ApplicationError
from controlsite.signatures.models import SignatureMeaning
from masterfile.api.serializers import ProductBriefSerializer, StrictCharField
from masterfile.models import PRODUCT_CODE_PATTERN, Product
from masterfile.selectors import products_visible_to
from sites.api.serializers import SiteBriefSerializer, SiteCodeField, SitePersonSerializer
from sites.models import SITE_CODE_PATTERN, Site

ID_REGEX = r"[0-9]{1,18}"
WINDOW_DAYS_MAX = 3650
LOT_MAX = 64

_QA_ONLY = " Only Control Site QA (403 `permission_denied` otherwise)."
_REASON_NOTE = " `reason` is required and kept with the change in the audit trail."
_SIGNED_NOTE = (
    " Signed: send your `username`, `password`, `otp` (where your role needs the second "
    "factor), the `meaning` named here and a `reason`. A refused signature is 422 "
    "(`wrong_password`, `otp_required`, ...) and changes nothing."
)
_IDEMPOTENT = (
    " Send an `Idempotency-Key` so a retry replays the first answer instead of writing twice; "
    "the same key with another body is 409."
)
_NOTHING_WRITTEN = " Any refusal writes nothing."


def _actor(request: Request) -> User:
    user: User = request.user  # type: ignore[assignment]  # authenticated by the permission
    return user


def _number(value: float | None) -> float | None:
    """Six significant digits, as the stored statistics (batches.stats.Equivalence.as_dict)."""
    return None if value is None else float(f"{value:.6g}")


#
# Shared fields
#


class LimitApprovalMeaning(models.TextChoices):
    APPROVED = SignatureMeaning.APPROVED.value, SignatureMeaning.APPROVED.label


class CheckReviewMeaning(models.TextChoices):
    REVIEWED = SignatureMeaning.REVIEWED.value, SignatureMeaning.REVIEWED.label


VERDICTS = [v.value for v in Verdict]
_VERDICT_HELP = (
    "`comparable`: the 90 % confidence interval of the mean difference lies within ± margin; "
    "`not_shown`: it does not; `too_little_data`: fewer than 3 results (or pairs) on either "
    "side. Null for the reference site itself, and for a check not yet recorded."
)


@extend_schema_field(
    {
        "type": "string",
        "enum": [*VERDICTS, None],
        "nullable": True,
        "description": _VERDICT_HELP,
    }
)
class VerdictField(serializers.Field):  # type: ignore[type-arg]
    """A verdict value, or null where there is none (stored as an empty string)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> str | None:
        return str(value) if value else None


class EquivalenceSerializer(serializers.Serializer[Any]):
    """One two-one-sided-tests comparison (batches.stats.Equivalence)."""

    n_site = serializers.IntegerField(read_only=True, help_text="Results (pairs) at the site.")
    n_reference = serializers.IntegerField(read_only=True)
    mean_site = serializers.FloatField(read_only=True, allow_null=True)
    mean_reference = serializers.FloatField(read_only=True, allow_null=True)
    difference = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Mean (site) − mean (reference)."
    )
    ci_low = serializers.FloatField(read_only=True, allow_null=True, help_text="90 % CI, low.")
    ci_high = serializers.FloatField(read_only=True, allow_null=True, help_text="90 % CI, high.")
    df = serializers.FloatField(read_only=True, allow_null=True, help_text="Degrees of freedom.")
    margin = serializers.FloatField(read_only=True)
    p_lower = serializers.FloatField(read_only=True, allow_null=True)
    p_upper = serializers.FloatField(read_only=True, allow_null=True)
    p_tost = serializers.FloatField(
        read_only=True, allow_null=True, help_text="The larger one-sided p; below 0.05 shows it."
    )
    verdict = VerdictField()
    paired = serializers.BooleanField(read_only=True)


#
# Reference limits
#


class ReferenceLimitLinksSerializer(serializers.Serializer[ReferenceLimit]):
    self = serializers.SerializerMethodField(help_text="These limits in the API.")
    statistics = serializers.SerializerMethodField(
        help_text="Each site's statistics against the reference site for this CQA."
    )
    html = serializers.SerializerMethodField(help_text="The product's comparability page.")

    def get_self(self, limit: ReferenceLimit) -> str:
        return reverse("api:reference-limit-detail", args=[limit.pk])

    def get_statistics(self, limit: ReferenceLimit) -> str:
        return f"{reverse('api:comparability-list')}?product={limit.product.code}&key={limit.key}"

    def get_html(self, limit: ReferenceLimit) -> str:
        url = reverse("batches:comparability-product", args=[limit.product.code])
        return f"{url}#cqa-{limit.key}"


class ReferenceLimitSerializer(serializers.ModelSerializer[ReferenceLimit]):
    """A CQA's reference limits as QA approved them (SO-09)."""

    product = ProductBriefSerializer(read_only=True)
    reference_site = SiteBriefSerializer(read_only=True)
    basis = NamedChoiceField(LimitBasis, read_only=True)
    status = NamedChoiceField(LimitStatus, read_only=True)
    centre = DecimalTextField(help_text="The centre line.")
    lower = DecimalTextField(help_text="The lower control limit.")
    upper = DecimalTextField(help_text="The upper control limit.")
    sigma = DecimalTextField(help_text="The spread the run rules measure against.")
    margin = DecimalTextField(help_text="The equivalence margin (±).")
    n = serializers.IntegerField(read_only=True, help_text="Verification results used (0: spec).")
    source_batches = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="The verification batches."
    )
    approved_by = SitePersonSerializer(read_only=True)
    approval_signature = serializers.SerializerMethodField(
        help_text="Control Site QA's approval, with whether it is still valid."
    )
    links = ReferenceLimitLinksSerializer(source="*", read_only=True)

    class Meta:
        model = ReferenceLimit
        fields = [
            "id",
            "product",
            "key",
            "name",
            "unit",
            "reference_site",
            "basis",
            "centre",
            "lower",
            "upper",
            "sigma",
            "margin",
            "n",
            "source_batches",
            "status",
            "approved_at",
            "approved_by",
            "approval_signature",
            "superseded_at",
            "links",
        ]
        read_only_fields = fields

    @extend_schema_field(SignatureBriefSerializer(allow_null=True))
    def get_approval_signature(self, limit: ReferenceLimit) -> dict[str, Any] | None:
        return signature_data(limit.approval_signature, limit)


class ReferenceLimitApproveSerializer(SignatureInputSerializer):
    """QA approves one CQA's reference limits with the meaning `approved`."""

    product = ProductCodeField()
    key = serializers.RegexField(
        KEY_PATTERN, max_length=40, help_text="The CQA's key in the product's batch template."
    )
    basis = NamedChoiceField(
        LimitBasis,
        help_text="`verification`: mean ± 3 SD of the reference site's verification batches; "
        "`specification`: the specification's limits (or tighter ones given).",
    )
    margin = DecimalInputField(
        help_text="The equivalence margin, above zero (400 `invalid_margin` otherwise)."
    )
    batches = serializers.ListField(
        child=StrictCharField(max_length=32),
        required=False,
        max_length=LIMIT_BATCHES_MAX,
        help_text="For `verification`: the reference site's batch numbers (3 to "
        f"{LIMIT_BATCHES_MAX}) with a result for the CQA.",
    )
    lower = DecimalInputField(
        required=False,
        allow_null=True,
        help_text="For `specification`: a lower limit tighter than the specification's.",
    )
    upper = DecimalInputField(
        required=False,
        allow_null=True,
        help_text="For `specification`: an upper limit tighter than the specification's.",
    )
    meaning = NamedChoiceField(LimitApprovalMeaning)


class ReferenceLimitFilter(django_filters.FilterSet):
    product = django_filters.CharFilter(
        field_name="product__code", max_length=16, help_text="The product's code, e.g. CART-01."
    )
    key = django_filters.CharFilter(max_length=40, help_text="The CQA's key, e.g. viability.")
    status = django_filters.ChoiceFilter(choices=LimitStatus.choices)
    basis = django_filters.ChoiceFilter(choices=LimitBasis.choices)

    class Meta:
        model = ReferenceLimit
        fields: list[str] = []


def _limit_detail(limit: ReferenceLimit) -> dict[str, Any]:
    fresh = ReferenceLimit.objects.select_related(
        "product", "reference_site", "approved_by", "approval_signature"
    ).get(pk=limit.pk)
    return dict(ReferenceLimitSerializer(fresh).data)


class ReferenceLimitViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Per product CQA, the reference site's validated limits and the equivalence margin,
    approved by Control Site QA with an e-signature; fixed until approved again (SO-09).
    Newest first."""

    serializer_class = ReferenceLimitSerializer
    filterset_class = ReferenceLimitFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[ReferenceLimit]:
        return selectors.limits_visible_to(self.request.user)

    @extend_schema(
        summary="List reference limits",
        description="Those of the products you can see, in force and superseded. Filter by "
        "`product` (code), `key`, `status` or `basis`. Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one set of reference limits",
        description="With QA's approval signature and whether it is still valid. The `ETag` "
        "header is the limits' content hash.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Approve a CQA's reference limits (QA, signed)",
        description="The limits in force for the CQA, if any, are superseded; every site is "
        "evaluated against the new ones. From `verification` batches: mean ± 3 SD of their "
        "results at the reference site (400 `verification_batches`; 409 `no_spread` when they "
        "are all equal; 400 `limits_computed` if `lower`/`upper` are given). From the "
        "`specification`: its limits or tighter ones (400 `limits_inverted` when the lower is "
        "not below the upper, `open_specification` for a one-sided one without both). 400 "
        "`invalid_margin` for a margin of zero or less, `unknown_cqa`, `invalid_value`."
        + _QA_ONLY
        + _SIGNED_NOTE
        + _NOTHING_WRITTEN
        + _IDEMPOTENT,
        request=ReferenceLimitApproveSerializer,
        responses={201: ReferenceLimitSerializer},
        examples=[
            OpenApiExample(
                "From the specification, tighter",
                value={
                    "product": "CART-01",
                    "key": "viability",
                    "basis": "specification",
                    "lower": "80",
                    "upper": 100,
                    "margin": "3",
                    "username": "quinn.adams",
                    "password": "your-password",
                    "meaning": "approved",
                    "reason": "Limits for cross-site comparability.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        signed = validated_input(ReferenceLimitApproveSerializer, request)
        data = signed.validated_data
        limit = services.reference_limit_approve(
            actor=_actor(request),
            product=data["product"],
            key=data["key"],
            basis=data["basis"],
            margin=data["margin"],
            credentials=signed.credentials(),
            reason=data["reason"],
            batches=data.get("batches"),
            lower=data.get("lower"),
            upper=data.get("upper"),
        )
        return Response(
            _limit_detail(limit),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:reference-limit-detail", args=[limit.pk])},
        )


#
# Statistics and the control chart
#


class ComparabilityQuerySerializer(serializers.Serializer[Any]):
    """Which product's CQA, over which period."""

    product = serializers.RegexField(
        PRODUCT_CODE_PATTERN, max_length=16, help_text="The product's code, e.g. CART-01."
    )
    key = serializers.RegexField(KEY_PATTERN, max_length=40, help_text="The CQA's key.")
    days = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=WINDOW_DAYS_MAX,
        help_text=f"Results of batches started in the last `days` days (default "
        f"{selectors.WINDOW_DAYS}).",
    )


class ChartQuerySerializer(ComparabilityQuerySerializer):
    site = serializers.RegexField(
        SITE_CODE_PATTERN, max_length=8, help_text="The site's code, e.g. MAN2."
    )


class LimitBriefSerializer(serializers.Serializer[ReferenceLimit]):
    id = serializers.IntegerField(read_only=True)
    basis = NamedChoiceField(LimitBasis, read_only=True)
    centre = DecimalTextField()
    lower = DecimalTextField()
    upper = DecimalTextField()
    sigma = DecimalTextField()
    margin = DecimalTextField()
    approved_at = serializers.DateTimeField(read_only=True, default_timezone=dt.UTC)
    url = serializers.SerializerMethodField(help_text="The limits in the API.")

    def get_url(self, limit: ReferenceLimit) -> str:
        return reverse("api:reference-limit-detail", args=[limit.pk])


class SiteStatisticsLinksSerializer(serializers.Serializer[Any]):
    chart = serializers.CharField(read_only=True, help_text="The control chart (SVG) in the API.")
    html = serializers.CharField(read_only=True, help_text="The site's chart page.")


class SiteStatisticsSerializer(serializers.Serializer[Any]):
    """One site against the reference site (SO-08)."""

    site = SiteBriefSerializer(read_only=True)
    is_reference = serializers.BooleanField(read_only=True)
    n = serializers.IntegerField(read_only=True, help_text="Results in the period.")
    mean = serializers.FloatField(read_only=True, allow_null=True)
    sd = serializers.FloatField(read_only=True, allow_null=True, help_text="Sample SD.")
    difference = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Mean (site) − mean (reference)."
    )
    ci_low = serializers.FloatField(read_only=True, allow_null=True, help_text="90 % CI, low.")
    ci_high = serializers.FloatField(read_only=True, allow_null=True, help_text="90 % CI, high.")
    df = serializers.FloatField(read_only=True, allow_null=True, help_text="Welch's df.")
    margin = serializers.FloatField(read_only=True)
    p_tost = serializers.FloatField(read_only=True, allow_null=True)
    verdict = VerdictField()
    signals = serializers.IntegerField(read_only=True, help_text="Signals in the last year.")
    links = SiteStatisticsLinksSerializer(read_only=True)


class WindowSerializer(serializers.Serializer[Any]):
    start = serializers.DateTimeField(read_only=True, default_timezone=dt.UTC)
    end = serializers.DateTimeField(read_only=True, default_timezone=dt.UTC)
    days = serializers.IntegerField(read_only=True)


class ComparabilitySerializer(serializers.Serializer[Any]):
    """A CQA of a product at every site you can see, against the reference site."""

    product = ProductBriefSerializer(read_only=True)
    key = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True)
    unit = serializers.CharField(read_only=True)
    reference_site = SiteBriefSerializer(read_only=True)
    limit = LimitBriefSerializer(read_only=True, help_text="The limits in force.")
    window = WindowSerializer(read_only=True)
    sites = SiteStatisticsSerializer(many=True, read_only=True)


class SvgRenderer(renderers.BaseRenderer):
    """Lets a client ask for `image/svg+xml`; a problem (400, 404) is still JSON."""

    media_type = "image/svg+xml"
    format = "svg"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if isinstance(data, str):
            return data.encode()
        return renderers.JSONRenderer().render(data)


def _product(request: Request, code: str) -> Product:
    product = (
        products_visible_to(request.user).select_related("reference_site").filter(code=code).first()
    )
    if product is None:
        raise ApplicationError("No such product (or not one you can see).", code="unknown_product")
    return product


def _limit_in_force(product: Product, key: str) -> ReferenceLimit:
    limit = selectors.active_limit(product, key)
    if limit is None:
        raise exceptions.NotFound(
            f"{product.code} has no reference limits in force for {key!r}.",
            code="no_reference_limits",
        )
    return limit


def _site_links(product: Product, key: str, site: Site) -> dict[str, str]:
    query = f"?product={product.code}&key={key}&site={site.code}"
    return {
        "chart": f"{reverse('api:comparability-chart')}{query}",
        "html": reverse("batches:comparability-site", args=[product.code, key, site.code]),
    }


def comparability_data(
    product: Product, limit: ReferenceLimit, sites: list[Site], days: int
) -> dict[str, Any]:
    window = selectors.Window.last_days(days)
    rows = selectors.comparability_table(limit, window, sites=sites)
    out = []
    for row in rows:
        eq = row.equivalence
        out.append(
            {
                "site": row.site,
                "is_reference": row.is_reference,
                "n": row.summary.n,
                "mean": _number(row.summary.mean),
                "sd": _number(row.summary.sd),
                "difference": _number(eq.difference) if eq else None,
                "ci_low": _number(eq.ci_low) if eq else None,
                "ci_high": _number(eq.ci_high) if eq else None,
                "df": _number(eq.df) if eq else None,
                "margin": float(limit.margin),
                "p_tost": _number(eq.p_tost) if eq else None,
                "verdict": row.verdict,
                "signals": row.signals,
                "links": _site_links(product, limit.key, row.site),
            }
        )
    return {
        "product": product,
        "key": limit.key,
        "name": limit.name,
        "unit": limit.unit,
        "reference_site": limit.reference_site,
        "limit": limit,
        "window": {"start": window.start, "end": window.end, "days": days},
        "sites": out,
    }


class ComparabilityViewSet(BaseViewSet):
    """Each site against the reference site for one CQA, and its control chart (SO-08, SO-09)."""

    serializer_class = ComparabilitySerializer
    pagination_class = None
    filter_backends: list[Any] = []
    single_object = True
    queryset = ReferenceLimit.objects.none()  # nothing is listed; the schema wants a model

    @extend_schema(
        summary="A CQA's statistics at every site",
        description="For the product's CQA (`product`, `key`), every site you can see that "
        "makes it, the reference site first: n, mean and SD of the results of batches started "
        "in the period, the mean difference from the reference site with its 90 % confidence "
        "interval (Welch), the two one-sided tests' p against the margin of the limits in "
        "force, and the verdict. Computed from the results now (the dashboard's snapshot may "
        "lag by one evaluation). 400 `unknown_product` for a product you cannot see; 404 "
        "`no_reference_limits` while the CQA has none in force.",
        parameters=[ComparabilityQuerySerializer],
        responses={200: ComparabilitySerializer},
    )
    def list(self, request: Request) -> Response:
        query = ComparabilityQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        asked = query.validated_data
        product = _product(request, asked["product"])
        limit = _limit_in_force(product, asked["key"])
        sites = selectors.comparability_sites(product, user=request.user)
        days = asked.get("days") or selectors.WINDOW_DAYS
        return Response(
            ComparabilitySerializer(comparability_data(product, limit, sites, days)).data
        )

    @extend_schema(
        summary="A site's control chart (SVG)",
        description="The individuals chart of the CQA at the site against the limits in force "
        "(centre line, LCL, UCL), points breaking Nelson rules 1–4 marked in red, the "
        "reference site's results in grey when you can see it — the same picture as on the "
        "site's page and in the annual report. A standalone `image/svg+xml` document. 400 "
        "`unknown_product`, `unknown_site` (a site you cannot see, or one that does not make "
        "the product); 404 `no_reference_limits`.",
        parameters=[ChartQuerySerializer],
        responses={
            (200, "image/svg+xml"): OpenApiResponse(
                response=OpenApiTypes.STR, description="The chart, a standalone SVG document."
            ),
            (400, "application/problem+json"): OpenApiResponse(
                response=ProblemSerializer, description="application/problem+json"
            ),
            (404, "application/problem+json"): OpenApiResponse(
                response=ProblemSerializer, description="application/problem+json"
            ),
        },
    )
    @action(
        detail=False,
        methods=["get"],
        renderer_classes=[renderers.JSONRenderer, SvgRenderer],
    )
    def chart(self, request: Request) -> HttpResponse:
        query = ChartQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        asked = query.validated_data
        product = _product(request, asked["product"])
        limit = _limit_in_force(product, asked["key"])
        sites = selectors.comparability_sites(product, user=request.user)
        site = next((s for s in sites if s.code == asked["site"]), None)
        if site is None:
            raise ApplicationError(
                f"No such site making {product.code} (or not one you can see).",
                code="unknown_site",
            )
        chart = chart_of(product, limit, site, sites, asked.get("days") or selectors.WINDOW_DAYS)
        return svg_response(chart.svg(), f"{product.code}-{limit.key}-{site.code}.svg")


#
# Annual checks (SO-09)
#


class CheckLinksSerializer(serializers.Serializer[ComparabilityCheck]):
    self = serializers.SerializerMethodField(help_text="This check in the API.")
    html = serializers.SerializerMethodField(help_text="This check's page.")
    record = serializers.SerializerMethodField(help_text="POST the paired results here.")
    review = serializers.SerializerMethodField(help_text="POST QA's signed review here.")
    cancel = serializers.SerializerMethodField(help_text="POST here to cancel.")

    def get_self(self, check: ComparabilityCheck) -> str:
        return reverse("api:comparability-check-detail", args=[check.pk])

    def get_html(self, check: ComparabilityCheck) -> str:
        return reverse("batches:comparability-check", args=[check.pk])

    def get_record(self, check: ComparabilityCheck) -> str:
        return reverse("api:comparability-check-record", args=[check.pk])

    def get_review(self, check: ComparabilityCheck) -> str:
        return reverse("api:comparability-check-review", args=[check.pk])

    def get_cancel(self, check: ComparabilityCheck) -> str:
        return reverse("api:comparability-check-cancel", args=[check.pk])


class CheckStatisticSerializer(EquivalenceSerializer):
    key = serializers.CharField(read_only=True)
    name = serializers.CharField(read_only=True)
    unit = serializers.CharField(read_only=True)


class CheckPairSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(read_only=True)
    lot = serializers.CharField(read_only=True)
    reference_value = DecimalTextField()
    site_value = DecimalTextField()


class ComparabilityCheckSerializer(serializers.ModelSerializer[ComparabilityCheck]):
    """An annual comparability check of one site for one product (SO-09)."""

    product = ProductBriefSerializer(read_only=True)
    site = SiteBriefSerializer(read_only=True)
    reference_site = SiteBriefSerializer(read_only=True)
    status = NamedChoiceField(CheckStatus, read_only=True)
    status_display = serializers.CharField(source="get_status_display", read_only=True)
    overdue = serializers.SerializerMethodField(help_text="Open and past its due date.")
    verdict = VerdictField()
    recorded_by = SitePersonSerializer(read_only=True, allow_null=True)
    reviewed_by = SitePersonSerializer(read_only=True, allow_null=True)
    statistics = CheckStatisticSerializer(
        many=True, read_only=True, help_text="Per CQA, the paired statistics."
    )
    links = CheckLinksSerializer(source="*", read_only=True)

    class Meta:
        model = ComparabilityCheck
        fields = [
            "id",
            "product",
            "site",
            "reference_site",
            "due_on",
            "status",
            "status_display",
            "overdue",
            "material",
            "recorded_at",
            "recorded_by",
            "verdict",
            "statistics",
            "conclusion",
            "reviewed_at",
            "reviewed_by",
            "links",
        ]
        read_only_fields = fields

    def get_overdue(self, check: ComparabilityCheck) -> bool:
        return check.is_overdue(timezone.localdate())


class ComparabilityCheckDetailSerializer(ComparabilityCheckSerializer):
    """A check with its paired results and QA's review signature."""

    pairs = serializers.SerializerMethodField(help_text="By CQA key and lot.")
    review_signature = serializers.SerializerMethodField(
        help_text="QA's review, with whether it is still valid; null until reviewed."
    )

    class Meta(ComparabilityCheckSerializer.Meta):
        fields = [*ComparabilityCheckSerializer.Meta.fields, "pairs", "review_signature"]
        read_only_fields = fields

    @extend_schema_field(CheckPairSerializer(many=True))
    def get_pairs(self, check: ComparabilityCheck) -> list[Any]:
        return list(CheckPairSerializer(check.pairs.order_by("key", "lot"), many=True).data)

    @extend_schema_field(SignatureBriefSerializer(allow_null=True))
    def get_review_signature(self, check: ComparabilityCheck) -> dict[str, Any] | None:
        return signature_data(check.review_signature, check)


def _reason_field() -> serializers.CharField:
    return serializers.CharField(max_length=REASON_MAX, help_text=REASON_HELP)


class CheckScheduleSerializer(StrictSerializer):
    product = ProductCodeField()
    site = SiteCodeField(help_text="The site to check, not the product's reference site.")
    due_on = serializers.DateField(help_text="The day the check is due: today or later.")
    reason = _reason_field()


class PairInputSerializer(StrictSerializer):
    key = serializers.CharField(max_length=40, help_text="The CQA's key (400 `unknown_cqa`).")
    lot = serializers.CharField(max_length=LOT_MAX, help_text="The portion of split material.")
    reference_value = DecimalInputField(
        required=False, allow_null=True, help_text="The reference site's result."
    )
    site_value = DecimalInputField(required=False, allow_null=True, help_text="The site's result.")


class CheckRecordSerializer(StrictSerializer):
    material = serializers.CharField(max_length=NAME_MAX, help_text="The split starting material.")
    pairs = serializers.ListField(
        child=PairInputSerializer(),
        min_length=1,
        max_length=CHECK_PAIRS_MAX,
        help_text=f"One entry per CQA and lot, each with both results; at most {CHECK_PAIRS_MAX}.",
    )
    reason = _reason_field()


class CheckReviewSerializer(SignatureInputSerializer):
    conclusion = serializers.CharField(max_length=JUSTIFICATION_MAX)
    meaning = NamedChoiceField(CheckReviewMeaning)


class CheckCancelSerializer(StrictSerializer):
    reason = _reason_field()


class ComparabilityCheckFilter(django_filters.FilterSet):
    product = django_filters.CharFilter(
        field_name="product__code", max_length=16, help_text="The product's code."
    )
    site = django_filters.CharFilter(
        field_name="site__code", max_length=8, help_text="The site's code."
    )
    status = django_filters.ChoiceFilter(choices=CheckStatus.choices)
    overdue = django_filters.ChoiceFilter(
        choices=YES_NO,
        method="filter_overdue",
        help_text="`true`: open checks past their due date; `false`: every other check.",
    )

    class Meta:
        model = ComparabilityCheck
        fields: list[str] = []

    def filter_overdue(
        self, queryset: QuerySet[ComparabilityCheck], name: str, value: Any
    ) -> QuerySet[ComparabilityCheck]:
        overdue = {"status__in": CHECK_OPEN, "due_on__lt": timezone.localdate()}
        return queryset.filter(**overdue) if value == "true" else queryset.exclude(**overdue)


def _check_detail(check: ComparabilityCheck) -> dict[str, Any]:
    fresh = ComparabilityCheck.objects.select_related(
        "product", "site", "reference_site", "recorded_by", "reviewed_by", "review_signature"
    ).get(pk=check.pk)
    return dict(ComparabilityCheckDetailSerializer(fresh).data)


class ComparabilityCheckViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """The annual comparability checks (SO-09): split starting material tested at the
    reference site and at the site, the paired statistics, QA's signed review. Soonest due
    first."""

    serializer_class = ComparabilityCheckSerializer
    filterset_class = ComparabilityCheckFilter
    lookup_value_regex = ID_REGEX
    ordering = ("due_on", "id")

    def get_queryset(self) -> QuerySet[ComparabilityCheck]:
        return selectors.checks_visible_to(self.request.user)

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        if self.action == "retrieve":
            return ComparabilityCheckDetailSerializer
        return ComparabilityCheckSerializer

    @extend_schema(
        summary="List the annual checks",
        description="Those of the sites you can see. Filter by `product`, `site`, `status` or "
        "`overdue=true`. Soonest due first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one check",
        description="With its paired results, statistics and QA's review signature.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Schedule a check",
        description="Against the product's reference site; 409 `check_open` while the site has "
        "an open check for the product, 409 `reference_site` for the reference site itself, "
        "400 `due_in_past` for a due date before today. "
        "A product or site you cannot see is 400 `unknown_product` / `unknown_site`."
        + _QA_ONLY
        + _REASON_NOTE
        + _IDEMPOTENT,
        request=CheckScheduleSerializer,
        responses={201: ComparabilityCheckDetailSerializer},
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(CheckScheduleSerializer, request))
        check = services.check_schedule(actor=_actor(request), reason=reason, **fields)
        return Response(
            _check_detail(check),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:comparability-check-detail", args=[check.pk])},
        )

    @extend_schema(
        summary="Record the paired results (scheduled → recorded)",
        description="All pairs or none: each needs both the reference site's and the site's "
        "result (400 `unpaired_results`, with `extra.pair` its index), a CQA of the product "
        "(400 `unknown_cqa`), once per CQA and lot (400 `duplicate_pair`). 409 "
        "`no_reference_limits` when a CQA has no margin in force; 409 `invalid_transition` "
        "unless scheduled. The statistics and the verdict are computed."
        + _QA_ONLY
        + _REASON_NOTE
        + _NOTHING_WRITTEN
        + _IDEMPOTENT,
        request=CheckRecordSerializer,
        responses={200: ComparabilityCheckDetailSerializer},
        examples=[
            OpenApiExample(
                "Three lots of split material",
                value={
                    "material": "SM-2026-07, split 50:50",
                    "pairs": [
                        {
                            "key": "viability",
                            "lot": "L1",
                            "reference_value": 92.0,
                            "site_value": 92.4,
                        },
                        {
                            "key": "viability",
                            "lot": "L2",
                            "reference_value": 93.5,
                            "site_value": 93.1,
                        },
                        {
                            "key": "viability",
                            "lot": "L3",
                            "reference_value": "91",
                            "site_value": "91.6",
                        },
                    ],
                    "reason": "Annual check results.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def record(self, request: Request, pk: str | None = None) -> Response:
        data = validated_input(CheckRecordSerializer, request).validated_data
        check = self.get_object()
        recorded = services.check_record(
            actor=_actor(request),
            check=check,
            material=data["material"],
            pairs=[
                services.PairEntry(
                    key=entry["key"],
                    lot=entry["lot"],
                    reference_value=entry.get("reference_value"),
                    site_value=entry.get("site_value"),
                )
                for entry in data["pairs"]
            ],
            reason=data["reason"],
        )
        return Response(_check_detail(recorded))

    @extend_schema(
        summary="Review with an e-signature (recorded → reviewed)",
        description="QA's conclusion, signed with the meaning `reviewed`. A check that does not "
        "show comparability opens one deviation; next year's check is scheduled. 409 "
        "`invalid_transition` unless recorded." + _QA_ONLY + _SIGNED_NOTE,
        request=CheckReviewSerializer,
        responses={200: ComparabilityCheckDetailSerializer},
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def review(self, request: Request, pk: str | None = None) -> Response:
        signed = validated_input(CheckReviewSerializer, request)
        check = self.get_object()
        reviewed = services.check_review(
            actor=_actor(request),
            check=check,
            conclusion=signed.validated_data["conclusion"],
            credentials=signed.credentials(),
            reason=signed.validated_data["reason"],
        )
        return Response(_check_detail(reviewed))

    @extend_schema(
        summary="Cancel an open check",
        description="With a reason; 409 `invalid_transition` once reviewed or cancelled."
        + _QA_ONLY
        + _REASON_NOTE,
        request=CheckCancelSerializer,
        responses={200: ComparabilityCheckDetailSerializer},
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        data = validated_input(CheckCancelSerializer, request).validated_data
        check = self.get_object()
        cancelled = services.check_cancel(actor=_actor(request), check=check, reason=data["reason"])
        return Response(_check_detail(cancelled))


#
# Signals (the outbox the deviations app turns into deviations)
#


class SignalLinksSerializer(serializers.Serializer[ComparabilitySignal]):
    chart = serializers.SerializerMethodField(help_text="The site's chart page.")
    deviations = serializers.SerializerMethodField(help_text="The site's deviations page.")

    def get_chart(self, signal: ComparabilitySignal) -> str:
        return reverse(
            "batches:comparability-site", args=[signal.product.code, signal.key, signal.site.code]
        )

    def get_deviations(self, signal: ComparabilitySignal) -> str:
        return f"{reverse('deviations:index')}?site={signal.site.code}"


class ComparabilitySignalSerializer(serializers.ModelSerializer[ComparabilitySignal]):
    """A run-rule break, a failed equivalence or a failed annual check: each opens exactly one
    deviation at the site (issue 8 §5)."""

    kind = NamedChoiceField(ComparabilitySignalKind, read_only=True)
    kind_display = serializers.CharField(source="get_kind_display", read_only=True)
    product = ProductBriefSerializer(read_only=True)
    site = SiteBriefSerializer(read_only=True)
    batch = serializers.SerializerMethodField(help_text="The batch that triggered it, or null.")
    rule = serializers.IntegerField(read_only=True, allow_null=True, help_text="Nelson rule 1-4.")
    detail = serializers.DictField(read_only=True, help_text="What was found.")
    processed = serializers.SerializerMethodField(
        help_text="True once the deviations app has opened its deviation."
    )
    links = SignalLinksSerializer(source="*", read_only=True)

    class Meta:
        model = ComparabilitySignal
        fields = [
            "id",
            "kind",
            "kind_display",
            "product",
            "key",
            "site",
            "batch",
            "rule",
            "detail",
            "created_at",
            "processed",
            "processed_at",
            "links",
        ]
        read_only_fields = fields

    def get_batch(self, signal: ComparabilitySignal) -> str | None:
        return signal.batch.number if signal.batch else None

    def get_processed(self, signal: ComparabilitySignal) -> bool:
        return signal.processed_at is not None


class ComparabilitySignalFilter(django_filters.FilterSet):
    product = django_filters.CharFilter(
        field_name="product__code", max_length=16, help_text="The product's code."
    )
    site = django_filters.CharFilter(
        field_name="site__code", max_length=8, help_text="The site's code."
    )
    key = django_filters.CharFilter(max_length=40, help_text="The CQA's key.")
    kind = django_filters.ChoiceFilter(choices=ComparabilitySignalKind.choices)
    processed = django_filters.ChoiceFilter(
        choices=YES_NO,
        method="filter_processed",
        help_text="`true`: a deviation has been opened; `false`: not yet.",
    )

    class Meta:
        model = ComparabilitySignal
        fields: list[str] = []

    def filter_processed(
        self, queryset: QuerySet[ComparabilitySignal], name: str, value: Any
    ) -> QuerySet[ComparabilitySignal]:
        return queryset.filter(processed_at__isnull=value != "true")


class ComparabilitySignalViewSet(mixins.ListModelMixin, BaseViewSet):
    """Comparability signals at the sites you can see, newest first. Read-only: the system
    raises them, the deviations app turns each into one deviation."""

    serializer_class = ComparabilitySignalSerializer
    filterset_class = ComparabilitySignalFilter
    ordering = "-id"

    def get_queryset(self) -> QuerySet[ComparabilitySignal]:
        return selectors.signals_visible_to(self.request.user)

    @extend_schema(
        summary="List comparability signals",
        description="Filter by `product`, `site`, `key`, `kind` or `processed`. Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)
