"""Training API resources, mounted under /api/v1/ by the composition root."""

from rest_framework.routers import SimpleRouter

from training.api import views

router = SimpleRouter()
router.register("procedures", views.ProcedureViewSet, basename="procedure")
router.register("procedure-versions", views.ProcedureVersionViewSet, basename="procedure-version")
router.register("training-items", views.TrainingItemViewSet, basename="training-item")
router.register("curricula", views.CurriculumViewSet, basename="curriculum")
router.register("training-assignments", views.AssignmentViewSet, basename="training-assignment")
router.register("training-records", views.TrainingRecordViewSet, basename="training-record")
router.register("qualification", views.QualificationViewSet, basename="qualification")
router.register("training-matrix", views.TrainingMatrixViewSet, basename="training-matrix")
