"""Master-file API: products and their sites, master files, versions with their lifecycle as
POST actions, sections, review comments and PDF exports (issue 4 §7 and §9; design §6).

Every queryset comes from a `masterfile.selectors` visibility rule, so a product, version or
export you may not see is a 404, never a 403. Every write is one `masterfile.services` (or
`masterfile.exports`) call, which checks the role (403), the lifecycle (409), the limits (400)
and the signature (422); views only parse input and shape output. A write parses its body before
it fetches the record, so a malformed body is a 400 whatever `If-Match` says.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from django.db.models import Count, Prefetch, Q, QuerySet
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import exceptions, mixins, renderers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from controlsite.accounts.models import User
from controlsite.api.base import BaseViewSet, split_reason, validated_input
from controlsite.api.schema import ProblemSerializer
from controlsite.signatures.services import content_hash
from masterfile import annual, selectors, services
from masterfile import exports as export_service
from masterfile.api.filters import (
    AnnualReportFilter,
    ExportFilter,
    MasterFileFilter,
    ProductFilter,
    ProductSiteFilter,
    ReviewCommentFilter,
    SectionFilter,
    VersionFilter,
)
from masterfile.api.serializers import (
    ID_MAX,
    AnnualReportRequestSerializer,
    AnnualReportSerializer,
    AnnualReportSubmissionSerializer,
    ExportSerializer,
    MasterFileInputSerializer,
    MasterFileSerializer,
    MasterFileUpdateSerializer,
    ProductCreateSerializer,
    ProductDetailSerializer,
    ProductSerializer,
    ProductSiteCreateSerializer,
    ProductSiteSerializer,
    ProductUpdateSerializer,
    ReasonSerializer,
    ReviewCommentCreateSerializer,
    ReviewCommentResolveSerializer,
    ReviewCommentSerializer,
    SectionAddSerializer,
    SectionDetailSerializer,
    SectionSerializer,
    SectionsReorderSerializer,
    SectionUpdateSerializer,
    VersionApproveSerializer,
    VersionDetailSerializer,
    VersionDiffSerializer,
    VersionSerializer,
    VersionUpdateSerializer,
)
from masterfile.choices import VersionStatus
from masterfile.models import (
    AnnexEntry,
    AnnualReport,
    MasterFile,
    MasterFileExport,
    MasterFileVersion,
    Product,
    ProductSite,
    ReviewComment,
    Section,
    VersionApproval,
)

ID_REGEX = r"[0-9]{1,18}"
_ID = re.compile(r"^[0-9]{1,18}$")

_PROBLEM = OpenApiResponse(response=ProblemSerializer, description="application/problem+json")

_REASON_NOTE = " `reason` is required and kept with the change in the audit trail."
_QA_ONLY = " Only Control Site QA (403 `permission_denied` otherwise)."
_STEP_NOTE = (
    " From any other status the step is 409 `transition_not_allowed`. The response is the "
    "version as it now stands."
)
_FROZEN_NOTE = (
    " Only while the version is a draft: afterwards its content is frozen (409 "
    "`version_not_editable`); start a new draft with `POST /master-files/{id}/drafts/`."
)


def _actor(request: Request) -> User:
    user: User = request.user  # type: ignore[assignment]  # authenticated by the permission
    return user


def _reason_example(reason: str) -> OpenApiExample:
    return OpenApiExample("With a reason", value={"reason": reason}, request_only=True)


#
# Products
#


def _with_summary(qs: QuerySet[Product]) -> QuerySet[Product]:
    """Everything a product's representation reads, in the one query that lists them and one
    more for the versions in force."""
    return qs.select_related("reference_site", "master_file").prefetch_related(
        Prefetch(
            "master_file__versions",
            queryset=MasterFileVersion.objects.filter(status=VersionStatus.EFFECTIVE),
            to_attr="effective_versions",
        )
    )


_PRODUCT_SITES = Prefetch(
    "site_links",
    queryset=selectors.live_product_sites()
    .select_related("site", "product")
    .order_by("role", "site__code"),
    to_attr="live_site_links",
)


class ProductViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    BaseViewSet,
):
    """Decentralised products (MF-01, MF-08): designation, shelf life, supply status and the
    reference site. Products are never deleted."""

    serializer_class = ProductSerializer
    filterset_class = ProductFilter
    lookup_value_regex = ID_REGEX
    ordering = "code"

    def get_queryset(self) -> QuerySet[Product]:
        qs = _with_summary(selectors.products_visible_to(self.request.user))
        if self.action == "retrieve":
            qs = qs.prefetch_related(_PRODUCT_SITES)
        return qs

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return ProductDetailSerializer if self.action == "retrieve" else ProductSerializer

    def _detail(self, product: Product) -> dict[str, Any]:
        fresh = _with_summary(Product.objects.filter(pk=product.pk)).prefetch_related(
            _PRODUCT_SITES
        )
        return dict(ProductDetailSerializer(fresh.get()).data)

    @extend_schema(
        summary="List the products you can see",
        description="Control Site QA, QPs and inspectors see every product; anyone else sees "
        "the products made or tested at their sites. Ordered by code.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one product",
        description="The product with its live sites. A product you may not see is 404. The "
        "`ETag` header goes into `If-Match` on your next write to it.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Register a product",
        description="Registers the product with its reference site (its first manufacturing "
        "site), its master file and a first draft built from the default sections."
        + _QA_ONLY
        + _REASON_NOTE
        + " 409 `product_exists` if the code or name is taken; a site you cannot see is 400 "
        "`unknown_site`. Send an `Idempotency-Key` so a retry never registers twice.",
        request=ProductCreateSerializer,
        responses={201: ProductDetailSerializer},
        examples=[
            OpenApiExample(
                "A point-of-care CAR-T product",
                value={
                    "code": "CART-01",
                    "name": "Autologous CAR-T cells",
                    "designation": "poc",
                    "designation_reference": "DM-2026-0007",
                    "designation_date": "2026-03-01",
                    "dosage_form": "Suspension for infusion",
                    "shelf_life_minutes": 180,
                    "supply_status": "investigational",
                    "reference_site": "LON1",
                    "reason": "Designated by the MHRA, letter of 1 March 2026.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(ProductCreateSerializer, request))
        product = services.product_register(actor=_actor(request), reason=reason, **fields)
        return Response(
            self._detail(product),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:product-detail", args=[product.pk])},
        )

    @extend_schema(
        summary="Change a product's details",
        description="Only the fields you send change. The code never changes (400 "
        "`product_code_immutable`). A new reference site is linked as a manufacturing site; a "
        "change to designation, dosage form or shelf life is flagged for designation review in "
        "the audit trail." + _QA_ONLY + _REASON_NOTE,
        request=ProductUpdateSerializer,
        responses={200: ProductDetailSerializer},
        examples=[
            OpenApiExample(
                "A longer shelf life",
                value={"shelf_life_minutes": 240, "reason": "Stability study SS-2026-02."},
                request_only=True,
            )
        ],
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        changes, reason = split_reason(validated_input(ProductUpdateSerializer, request))
        product = self.get_object()
        updated = services.product_update(
            actor=_actor(request), product=product, reason=reason, changes=changes
        )
        return Response(self._detail(updated))


class ProductSiteViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Which sites make or test which product (MF-04 a-c). The next version's site annex is
    generated from the live links. A list shows live links unless `ended` is given."""

    serializer_class = ProductSiteSerializer
    filterset_class = ProductSiteFilter
    lookup_value_regex = ID_REGEX
    ordering = "id"

    def get_queryset(self) -> QuerySet[ProductSite]:
        # The links of every product you may see: the annex of a version you may read names
        # the same sites.
        qs = ProductSite.objects.filter(
            product__in=selectors.products_visible_to(self.request.user)
        ).select_related("product", "site")
        if self.action == "list" and "ended" not in self.request.query_params:
            qs = qs.filter(ended_at__isnull=True)
        return qs

    @extend_schema(
        summary="Name a site as making or testing a product",
        description="The site enters the master file with the next version's annex and may "
        "manufacture only once that version is effective. A testing laboratory is only a "
        "testing site (400 `site_kind`); 409 `already_linked` if the link exists."
        + _QA_ONLY
        + _REASON_NOTE,
        request=ProductSiteCreateSerializer,
        responses={201: ProductSiteSerializer},
        examples=[
            OpenApiExample(
                "A second manufacturing site",
                value={
                    "product": 1,
                    "site": "MAN2",
                    "role": "manufacturing",
                    "reason": "Site qualified for the CAR-T process, report QR-2026-11.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        fields, reason = split_reason(validated_input(ProductSiteCreateSerializer, request))
        link = services.product_site_add(actor=_actor(request), reason=reason, **fields)
        return Response(ProductSiteSerializer(link).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="End a product's link to a site",
        description="The site leaves the master file with the next version's annex. The "
        "reference site cannot be removed (409 `reference_site`); 409 `already_ended` if it "
        "was." + _QA_ONLY + _REASON_NOTE,
        request=ReasonSerializer,
        responses={200: ProductSiteSerializer},
        examples=[_reason_example("Technical agreement with the site ended.")],
    )
    @action(detail=True, methods=["post"])
    def end(self, request: Request, pk: str | None = None) -> Response:
        reason = validated_input(ReasonSerializer, request).validated_data["reason"]
        link = self.get_object()
        ended = services.product_site_end(actor=_actor(request), link=link, reason=reason)
        return Response(ProductSiteSerializer(ended).data)


#
# Master files
#


_ALL_VERSIONS = Prefetch(
    "versions", queryset=MasterFileVersion.objects.order_by("-number"), to_attr="all_versions"
)


class MasterFileViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """The one master file (DMMF) of each product you can see, with its versions (MF-03)."""

    serializer_class = MasterFileSerializer
    filterset_class = MasterFileFilter
    lookup_value_regex = ID_REGEX
    ordering = "id"

    def get_queryset(self) -> QuerySet[MasterFile]:
        return selectors.master_files_visible_to(self.request.user).prefetch_related(_ALL_VERSIONS)

    def _fresh(self, master_file: MasterFile) -> dict[str, Any]:
        fresh = (
            MasterFile.objects.filter(pk=master_file.pk)
            .select_related("product", "owner")
            .prefetch_related(_ALL_VERSIONS)
        )
        return dict(MasterFileSerializer(fresh.get()).data)

    @extend_schema(
        summary="Change a master file's owner or review interval",
        description="The owner is reminded before each next-review date (MF-12)."
        + _QA_ONLY
        + _REASON_NOTE,
        request=MasterFileUpdateSerializer,
        responses={200: MasterFileSerializer},
        examples=[
            OpenApiExample(
                "A new owner",
                value={"owner": "qa.lead", "review_interval_months": 12, "reason": "Handover."},
                request_only=True,
            )
        ],
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(MasterFileUpdateSerializer, request))
        master_file = self.get_object()
        services.master_file_update(
            actor=_actor(request), master_file=master_file, reason=reason, **fields
        )
        return Response(self._fresh(master_file))

    @extend_schema(
        summary="Start a new draft",
        description="The next version, as a copy of the effective one (or of the default "
        "sections if none is effective yet). 409 `version_open` while another version is in "
        "draft, in review or approved; the problem's `extra.open_version` names it."
        + _QA_ONLY
        + _REASON_NOTE,
        request=ReasonSerializer,
        responses={201: VersionDetailSerializer},
        examples=[_reason_example("Annual review 2026; site MAN3 added.")],
    )
    @action(detail=True, methods=["post"])
    def drafts(self, request: Request, pk: str | None = None) -> Response:
        reason = validated_input(ReasonSerializer, request).validated_data["reason"]
        master_file = self.get_object()
        version = services.draft_start(
            actor=_actor(request), master_file=master_file, reason=reason
        )
        return Response(
            _version_detail(version),
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:master-file-version-detail", args=[version.pk])},
        )


#
# Versions
#


def _with_detail(qs: QuerySet[MasterFileVersion]) -> QuerySet[MasterFileVersion]:
    return qs.annotate(
        open_comments=Count("comments", filter=Q(comments__resolved_at__isnull=True))
    ).prefetch_related(
        Prefetch(
            "sections",
            queryset=Section.objects.order_by("position", "key"),
            to_attr="ordered_sections",
        ),
        Prefetch(
            "annex_entries",
            queryset=AnnexEntry.objects.order_by("role", "-is_reference", "site_code"),
            to_attr="ordered_annex",
        ),
        Prefetch(
            "approvals",
            queryset=VersionApproval.objects.select_related("signer", "signature").order_by(
                "created_at", "id"
            ),
            to_attr="all_approvals",
        ),
    )


def _version_detail(version: MasterFileVersion) -> dict[str, Any]:
    """The version as it stands after a write, read afresh."""
    fresh = _with_detail(
        MasterFileVersion.objects.filter(pk=version.pk).select_related("master_file__product")
    ).get()
    return dict(VersionDetailSerializer(fresh, context={"content_hash": content_hash(fresh)}).data)


_SIGNED_NOTE = (
    " Signed: send your `username`, `password`, `otp` (a QP's role needs the second factor), "
    "`meaning` = `approved`, the `capacity` you approve in and a `reason`. A refused signature "
    "is 422 (`wrong_password`, `otp_required`, `same_signer`, ...) and changes nothing."
)


class MasterFileVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Versions of the master files you can see: `draft → in_review → approved → effective →
    superseded`, each step an explicit POST action (MF-03, MF-12). Newest first."""

    serializer_class = VersionSerializer
    filterset_class = VersionFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[MasterFileVersion]:
        qs = selectors.versions_visible_to(self.request.user)
        if self.action == "retrieve":
            qs = _with_detail(qs)
        return qs

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return VersionDetailSerializer if self.action == "retrieve" else VersionSerializer

    @extend_schema(
        summary="List the master-file versions you can see",
        description="Filter by `status`, `product` or `master_file`. Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one version",
        description="The version with its sections (summarised; bodies at `/sections/`), the "
        "site annex frozen at submission, every approval with signer, printed name, UTC time, "
        "meaning and whether the signature is still valid, and links to its actions. The "
        "`ETag` header goes into `If-Match` on your next write.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self.get_object()
        context = {"request": request, "content_hash": content_hash(version)}
        return Response(VersionDetailSerializer(version, context=context).data)

    @extend_schema(
        summary="Write the change summary",
        description="What changed from the previous version; a later version needs one before "
        "it is submitted." + _FROZEN_NOTE + _QA_ONLY + _REASON_NOTE,
        request=VersionUpdateSerializer,
        responses={200: VersionDetailSerializer},
        examples=[
            OpenApiExample(
                "Summary",
                value={
                    "change_summary": "Site MAN3 added; release procedure clarified.",
                    "reason": "Drafting v2.",
                },
                request_only=True,
            )
        ],
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        data = validated_input(VersionUpdateSerializer, request).validated_data
        version = self.get_object()
        services.change_summary_set(
            actor=_actor(request),
            version=version,
            summary=data["change_summary"],
            reason=data["reason"],
        )
        return Response(_version_detail(version))

    @extend_schema(
        summary="Submit for review (draft → in review)",
        description="Every section must have content (409 `sections_empty`, naming them in "
        "`extra.sections`) and a later version needs a change summary (409 "
        "`change_summary_required`). The site annex is generated from the site register and "
        "frozen into the version." + _QA_ONLY + _REASON_NOTE + _STEP_NOTE,
        request=ReasonSerializer,
        responses={200: VersionDetailSerializer},
        examples=[_reason_example("Ready for QA and QP review.")],
    )
    @action(detail=True, methods=["post"])
    def submit(self, request: Request, pk: str | None = None) -> Response:
        reason = validated_input(ReasonSerializer, request).validated_data["reason"]
        version = self.get_object()
        services.version_submit(actor=_actor(request), version=version, reason=reason)
        return Response(_version_detail(version))

    @extend_schema(
        summary="Return to draft (in review → draft)",
        description="For changes. An approval given so far is withdrawn (its signature stays "
        "on record); both sign again. Control Site QA or a QP (403 otherwise)."
        + _REASON_NOTE
        + _STEP_NOTE,
        request=ReasonSerializer,
        responses={200: VersionDetailSerializer},
        examples=[_reason_example("Section 4 must name the testing laboratory.")],
    )
    @action(detail=True, methods=["post"], url_path="return", url_name="return")
    def return_(self, request: Request, pk: str | None = None) -> Response:
        reason = validated_input(ReasonSerializer, request).validated_data["reason"]
        version = self.get_object()
        services.version_return(actor=_actor(request), version=version, reason=reason)
        return Response(_version_detail(version))

    @extend_schema(
        summary="Approve with an e-signature (in review; → approved with the second)",
        description="Control Site QA approves first (`capacity` = `qa`), then a QP (`qp`); two "
        "different people (MF-03, ES-01). 409 `already_approved` for a capacity given, 409 "
        "`approval_out_of_order` for the QP before QA, 409 `comments_open` while review "
        "comments are open, 422 `same_signer` if you approved in the other capacity, 403 "
        "without the capacity's role." + _SIGNED_NOTE + _STEP_NOTE,
        request=VersionApproveSerializer,
        responses={200: VersionDetailSerializer},
        examples=[
            OpenApiExample(
                "The QP approves",
                value={
                    "username": "priya.patel",
                    "password": "your-password",
                    "otp": "123456",
                    "meaning": "approved",
                    "capacity": "qp",
                    "reason": "Fit to support release decisions.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        signed = validated_input(VersionApproveSerializer, request)
        version = self.get_object()
        services.version_approve(
            actor=_actor(request),
            version=version,
            capacity=signed.validated_data["capacity"],
            credentials=signed.credentials(),
            reason=signed.validated_data["reason"],
        )
        return Response(_version_detail(version))

    @extend_schema(
        summary="Make effective (approved → effective)",
        description="In force from today; the version it replaces is superseded in the same "
        "step and the next review date is set from the review interval."
        + _QA_ONLY
        + _REASON_NOTE
        + _STEP_NOTE,
        request=ReasonSerializer,
        responses={200: VersionDetailSerializer},
        examples=[_reason_example("Approved by QA and QP; in force for all sites.")],
    )
    @action(detail=True, methods=["post"], url_path="make-effective", url_name="make-effective")
    def make_effective(self, request: Request, pk: str | None = None) -> Response:
        reason = validated_input(ReasonSerializer, request).validated_data["reason"]
        version = self.get_object()
        services.version_make_effective(actor=_actor(request), version=version, reason=reason)
        return Response(_version_detail(version))

    @extend_schema(
        summary="What changed from another version, section by section",
        description="Sections in this version's order (removed sections last), each `added`, "
        "`removed`, `changed` (with a line diff), `moved` or `unchanged`; and the sites added "
        "to, removed from or changed in the annex. `against` is another version of the same "
        "master file (400 `unknown_version` otherwise); by default the one this version "
        "changes (400 `no_earlier_version` for a first version).",
        parameters=[
            OpenApiParameter(
                name="against",
                location=OpenApiParameter.QUERY,
                required=False,
                type={"type": "integer", "minimum": 0, "maximum": ID_MAX},
                description="The id of the version to compare with.",
            )
        ],
        responses={200: VersionDiffSerializer},
    )
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def diff(self, request: Request, pk: str | None = None) -> Response:
        raw = request.query_params.get("against")
        if raw is not None and not _ID.match(raw):
            raise exceptions.ValidationError(
                {"against": ["A version id: 1 to 18 digits."]}, code="invalid"
            )
        version = self.get_object()
        if raw is not None:
            against = version.master_file.versions.filter(pk=int(raw)).first()
            if against is None:
                raise exceptions.ValidationError(
                    {"against": ["No such version of this master file."]}, code="unknown_version"
                )
        else:
            against = selectors.previous_version(version)
            if against is None:
                raise exceptions.ValidationError(
                    {"against": ["This is the first version: name one to compare with."]},
                    code="no_earlier_version",
                )
        body = {
            "version": version,
            "against": against,
            "sections": selectors.version_diff(against, version),
            "annex": selectors.annex_diff(against, version),
        }
        return Response(VersionDiffSerializer(body).data)

    @extend_schema(
        summary="Request a PDF/A export",
        description="Creates the export and queues its rendering; the answer is 202 with the "
        "export, and `Location` names it: poll `GET /exports/{id}/` for `status` and "
        "`progress`, then download. A draft's export is watermarked. Control Site QA or a QP "
        "(403 otherwise); 409 `export_in_flight` while one is queued or running for the "
        "version. A version you may not see is 404.",
        request=MasterFileInputSerializer,
        responses={202: ExportSerializer},
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def exports(self, request: Request, pk: str | None = None) -> Response:
        validated_input(MasterFileInputSerializer, request)
        version = self.get_object()
        export = export_service.export_request(actor=_actor(request), version=version)
        return _export_accepted(request, export)

    @extend_schema(
        summary="Add a section",
        description="At the end, or after the section named by `after_key` (400 "
        "`unknown_section` if there is none). 409 `key_exists` for a key already used; 400 "
        "`section_empty`, `section_too_long` or `title_required` with the limits stated."
        + _FROZEN_NOTE
        + _QA_ONLY
        + _REASON_NOTE,
        request=SectionAddSerializer,
        responses={201: SectionDetailSerializer},
        examples=[
            OpenApiExample(
                "Cold chain",
                value={
                    "key": "cold-chain",
                    "title": "Cold chain between sites",
                    "body": "Product is shipped at 2–8 °C in validated shippers.",
                    "after_key": "production",
                    "reason": "MHRA question 3 of the designation review.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def sections(self, request: Request, pk: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(SectionAddSerializer, request))
        version = self.get_object()
        section = services.section_add(
            actor=_actor(request), version=version, reason=reason, **fields
        )
        fresh = Section.objects.select_related("version__master_file__product").get(pk=section.pk)
        return Response(
            SectionDetailSerializer(fresh).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("api:section-detail", args=[section.pk])},
        )

    @extend_schema(
        summary="Reorder the sections",
        description="Name every section key of the version exactly once, in the new order "
        "(400 `invalid_order` otherwise; `extra.expected` lists the keys)."
        + _FROZEN_NOTE
        + _QA_ONLY
        + _REASON_NOTE,
        request=SectionsReorderSerializer,
        responses={200: VersionDetailSerializer},
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def reorder(self, request: Request, pk: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(SectionsReorderSerializer, request))
        version = self.get_object()
        services.sections_reorder(
            actor=_actor(request), version=version, keys=fields["keys"], reason=reason
        )
        return Response(_version_detail(version))


#
# Sections
#


class SectionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """The chapters of the versions you can see, with their Markdown bodies. Ordered by
    version, then position: filter by `version` for one version's document order."""

    serializer_class = SectionSerializer
    filterset_class = SectionFilter
    lookup_value_regex = ID_REGEX
    ordering = ("version_id", "position", "id")

    def get_queryset(self) -> QuerySet[Section]:
        return selectors.sections_visible_to(self.request.user)

    def get_serializer_class(self) -> type[BaseSerializer[Any]]:
        return SectionDetailSerializer if self.action == "retrieve" else SectionSerializer

    @extend_schema(
        summary="Change a section's title or body",
        description="Only the fields you send change. The body is Markdown, not empty "
        "(400 `section_empty`) and within the stated limit (400 `section_too_long`). Send the "
        "`ETag` you read as `If-Match` so an edit is never made over someone else's newer one "
        "(412)." + _FROZEN_NOTE + _QA_ONLY + _REASON_NOTE,
        request=SectionUpdateSerializer,
        responses={200: SectionDetailSerializer},
        examples=[
            OpenApiExample(
                "New text",
                value={
                    "body": "## Release\n\nEach batch is certified by a QP before use.",
                    "reason": "Clarified the release procedure.",
                },
                request_only=True,
            )
        ],
    )
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        fields, reason = split_reason(validated_input(SectionUpdateSerializer, request))
        section = self.get_object()
        updated = services.section_update(
            actor=_actor(request), section=section, reason=reason, **fields
        )
        fresh = Section.objects.select_related("version__master_file__product").get(pk=updated.pk)
        return Response(SectionDetailSerializer(fresh).data)


#
# Review comments
#


class ReviewCommentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Reviewers' comments on the versions you can see, each on the whole version or one
    section. Control Site QA approves only once every comment is resolved."""

    serializer_class = ReviewCommentSerializer
    filterset_class = ReviewCommentFilter
    lookup_value_regex = ID_REGEX
    ordering = "id"

    def get_queryset(self) -> QuerySet[ReviewComment]:
        return selectors.comments_visible_to(self.request.user)

    @extend_schema(
        summary="Comment on a version",
        description="On the whole version, or on one section named by its key (400 "
        "`unknown_section` if the version has none such). Only while it is a draft or in review "
        "(409 `review_closed`). Control Site QA or a QP (403 otherwise). A version you cannot "
        "see is 400 `unknown`.",
        request=ReviewCommentCreateSerializer,
        responses={201: ReviewCommentSerializer},
        examples=[
            OpenApiExample(
                "On a section",
                value={
                    "version": 12,
                    "section": "release",
                    "body": "Name the deputy QP for out-of-hours release.",
                },
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        data = validated_input(ReviewCommentCreateSerializer, request).validated_data
        version: MasterFileVersion = data["version"]
        section = None
        key = data.get("section")
        if key is not None:
            section = version.sections.filter(key=key).first()
            if section is None:
                raise exceptions.ValidationError(
                    {"section": [f"Version {version.number} has no section {key!r}."]},
                    code="unknown_section",
                )
        comment = services.comment_add(
            actor=_actor(request), version=version, body=data["body"], section=section
        )
        fresh = self.get_queryset().get(pk=comment.pk)
        return Response(ReviewCommentSerializer(fresh).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Resolve a comment",
        description="Say how it was resolved; 409 `already_resolved` if it was. Control Site "
        "QA or a QP (403 otherwise).",
        request=ReviewCommentResolveSerializer,
        responses={200: ReviewCommentSerializer},
        examples=[
            OpenApiExample(
                "Done",
                value={"resolution": "Deputy QP named in section 7."},
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request: Request, pk: str | None = None) -> Response:
        data = validated_input(ReviewCommentResolveSerializer, request).validated_data
        comment = self.get_object()
        services.comment_resolve(
            actor=_actor(request), comment=comment, resolution=data["resolution"]
        )
        return Response(ReviewCommentSerializer(self.get_queryset().get(pk=comment.pk)).data)


#
# Exports
#


class PdfRenderer(renderers.BaseRenderer):
    """Lets a client ask for `application/pdf`; the file itself is streamed as it is, and a
    problem (404, 409) is still JSON."""

    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if isinstance(data, bytes):
            return data
        return renderers.JSONRenderer().render(data)


def _download_schema(noun: str) -> dict[str, Any]:
    """The OpenAPI description of a PDF job's download (the export's, the annual report's)."""
    return {
        "summary": "Download the PDF",
        "description": "The PDF/A file, streamed. Its SHA-256 is in the `X-Content-SHA256` "
        f"header (hex) and `Repr-Digest` (RFC 9530) as well as in the {noun}'s `sha256`. Every "
        f"download is an audit event. 409 `{noun}_not_ready` until the {noun} is done, and 409 "
        f"`{noun}_file_mismatch` if the stored file no longer matches its SHA-256.",
        "responses": {
            (200, "application/pdf"): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="The PDF/A file."
            ),
            (409, "application/problem+json"): _PROBLEM,
        },
        "parameters": [
            OpenApiParameter(
                name="X-Content-SHA256",
                location=OpenApiParameter.HEADER,
                type=str,
                response=[200],
                description="SHA-256 of the file, hex.",
            ),
            OpenApiParameter(
                name="Repr-Digest",
                location=OpenApiParameter.HEADER,
                type=str,
                response=[200],
                description="`sha-256=:<base64>:` (RFC 9530).",
            ),
        ],
    }


def _pdf_file(row: Any) -> FileResponse:
    """A PDF job's stored file, streamed with its SHA-256 (hex, and RFC 9530) and not cached."""
    response = FileResponse(
        row.file.open("rb"),
        as_attachment=True,
        filename=row.filename,
        content_type="application/pdf",
    )
    response["X-Content-SHA256"] = row.sha256
    response["Repr-Digest"] = f"sha-256=:{base64.b64encode(bytes.fromhex(row.sha256)).decode()}:"
    response["Cache-Control"] = "private, no-store"
    return response


def _export_accepted(request: Request, export: MasterFileExport) -> Response:
    fresh = (
        MasterFileExport.objects.select_related("version__master_file__product", "requested_by")
        .filter(pk=export.pk)
        .get()
    )
    return Response(
        ExportSerializer(fresh, context={"request": request}).data,
        status=status.HTTP_202_ACCEPTED,
        headers={"Location": reverse("api:export-detail", args=[export.pk])},
    )


class ExportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """PDF/A exports of the versions you can see: a job with status and progress, then the
    file with its SHA-256 (design §7; MF-06, DI-07). Newest first."""

    serializer_class = ExportSerializer
    filterset_class = ExportFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[MasterFileExport]:
        return selectors.exports_visible_to(self.request.user)

    @extend_schema(
        summary="Read one export (poll it)",
        description="`status` goes `queued → running → done | failed`; `progress` (0–100) and "
        "`stage` say how far it is. Once done: `sha256`, `page_count`, `size_bytes` and the "
        "absolute `download_url`; once failed: `error`, and it may be retried.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(**_download_schema("export"))
    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[renderers.JSONRenderer, PdfRenderer],
        filterset_class=None,
    )
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        export = self.get_object()
        export_service.export_download_record(actor=_actor(request), export=export)
        return _pdf_file(export)

    @extend_schema(
        summary="Retry a failed export",
        description="A failed export goes back to the queue (409 `export_not_failed` "
        "otherwise; 409 `export_in_flight` while another export of the version runs). Control "
        "Site QA or a QP (403 otherwise). 202 with the export; poll it.",
        request=MasterFileInputSerializer,
        responses={202: ExportSerializer},
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def retry(self, request: Request, pk: str | None = None) -> Response:
        validated_input(MasterFileInputSerializer, request)
        export = self.get_object()
        retried = export_service.export_retry(actor=_actor(request), export=export)
        return _export_accepted(request, retried)


#
# Annual reports (issue 8 §7; MF-07, RP-01)
#


def _report_response(request: Request, report: AnnualReport, code: int) -> Response:
    fresh = annual.annual_reports_visible_to(_actor(request)).get(pk=report.pk)
    return Response(
        AnnualReportSerializer(fresh, context={"request": request}).data,
        status=code,
        headers={"Location": reverse("api:annual-report-detail", args=[report.pk])},
    )


class AnnualReportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, BaseViewSet):
    """Annual reports of a product for a calendar year (MF-07, RP-01): a PDF/A made in the
    background — a job with status and progress, then the file with its SHA-256 — and the
    record of its submission to the MHRA. A report shows every site's figures: Control Site QA,
    QPs and inspectors see them; anyone limited to some sites sees none. Newest first."""

    serializer_class = AnnualReportSerializer
    filterset_class = AnnualReportFilter
    lookup_value_regex = ID_REGEX
    ordering = "-id"

    def get_queryset(self) -> QuerySet[AnnualReport]:
        return annual.annual_reports_visible_to(self.request.user)

    @extend_schema(
        summary="List the annual reports you can see",
        description="Filter by `product`, `year`, `status` or `submitted`. Newest first.",
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        summary="Read one annual report (poll it)",
        description="`status` goes `queued → running → done | failed`; `progress` (0–100) and "
        "`stage` say how far it is. Once done: `sha256`, `page_count`, `size_bytes`, "
        "`data_as_at`, `year_complete` and the absolute `download_url`; once failed: `error`, "
        "and it may be retried. `due_on` is when the year's report is due with the MHRA; "
        "`submitted_on` and `submission_reference` once its submission is recorded.",
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        summary="Ask for an annual report",
        description="Queues the report of a product for a calendar year: 202 with the new "
        "report, and `Location` names it — poll it, then download. While a report of the same "
        "product and year is queued or running, the answer is 200 with that one and nothing "
        "is written. The year must have begun (400 `year_in_future`) and not be before the "
        "year of the product's designation (400 `year_before_designation`); this year is "
        "reported to date. A product you cannot see is 400 `unknown`. Control "
        "Site QA only (403 otherwise). Send an `Idempotency-Key` so a retry never asks twice.",
        request=AnnualReportRequestSerializer,
        responses={
            202: AnnualReportSerializer,
            200: OpenApiResponse(
                response=AnnualReportSerializer,
                description="A report of the product and year is already queued or running.",
            ),
        },
        examples=[
            OpenApiExample(
                "The 2026 report of a product",
                value={"product": 1, "year": 2026},
                request_only=True,
            )
        ],
    )
    def create(self, request: Request) -> Response:
        data = validated_input(AnnualReportRequestSerializer, request).validated_data
        report, created = annual.annual_report_request(
            actor=_actor(request), product=data["product"], year=data["year"]
        )
        code = status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK
        return _report_response(request, report, code)

    @extend_schema(**_download_schema("report"))
    @action(
        detail=True,
        methods=["get"],
        renderer_classes=[renderers.JSONRenderer, PdfRenderer],
        filterset_class=None,
    )
    def download(self, request: Request, pk: str | None = None) -> FileResponse:
        report = self.get_object()
        annual.annual_report_download_record(actor=_actor(request), report=report)
        return _pdf_file(report)

    @extend_schema(
        summary="Retry a failed report",
        description="A failed report goes back to the queue (409 `report_not_failed` "
        "otherwise; 409 `report_in_flight` while another report of the same product and year "
        "runs). Control Site QA only (403 otherwise). 202 with the report; poll it.",
        request=MasterFileInputSerializer,
        responses={202: AnnualReportSerializer},
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def retry(self, request: Request, pk: str | None = None) -> Response:
        validated_input(MasterFileInputSerializer, request)
        report = self.get_object()
        retried = annual.annual_report_retry(actor=_actor(request), report=report)
        return _report_response(request, retried, status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Record the submission to the MHRA",
        description="Records that this finished report was submitted to the MHRA: the day "
        "(400 `date_in_future`, 400 `submitted_before_report`) and the MHRA's reference (MF-07 "
        "submission record). Once per report (409 `already_submitted`) and per product and "
        "year (409 `year_already_submitted`); only a done report (409 `report_not_ready`). "
        "Control Site QA only (403 otherwise)." + _REASON_NOTE,
        request=AnnualReportSubmissionSerializer,
        responses={200: AnnualReportSerializer},
        examples=[
            OpenApiExample(
                "Submitted through the portal",
                value={
                    "submitted_on": "2027-03-20",
                    "reference": "MHRA-DMMF-2026-0042",
                    "reason": "Submitted through the MHRA portal.",
                },
                request_only=True,
            )
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def submission(self, request: Request, pk: str | None = None) -> Response:
        data = validated_input(AnnualReportSubmissionSerializer, request).validated_data
        report = self.get_object()
        recorded = annual.annual_report_submission_record(
            actor=_actor(request),
            report=report,
            submitted_on=data["submitted_on"],
            reference=data["reference"],
            reason=data["reason"],
        )
        return _report_response(request, recorded, status.HTTP_200_OK)
