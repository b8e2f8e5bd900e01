"""Master files API resources, mounted under /api/v1/ by the composition root."""

from rest_framework.routers import SimpleRouter

from masterfile.api import views

router = SimpleRouter()
router.register("products", views.ProductViewSet, basename="product")
router.register("product-sites", views.ProductSiteViewSet, basename="product-site")
router.register("master-files", views.MasterFileViewSet, basename="master-file")
router.register(
    "master-file-versions", views.MasterFileVersionViewSet, basename="master-file-version"
)
router.register("sections", views.SectionViewSet, basename="section")
router.register("review-comments", views.ReviewCommentViewSet, basename="review-comment")
router.register("exports", views.ExportViewSet, basename="export")
router.register("annual-reports", views.AnnualReportViewSet, basename="annual-report")
