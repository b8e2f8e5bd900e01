"""Proof that background workers are alive."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class WorkerHeartbeat(models.Model):
    """A row written by the health task each time a worker runs it."""

    token = models.CharField(_("token"), max_length=64, unique=True)
    worker = models.CharField(_("worker"), max_length=255, blank=True)
    eager = models.BooleanField(_("ran in-process"), default=False)
    received_at = models.DateTimeField(_("received at"), auto_now_add=True)

    class Meta:
        verbose_name = _("worker heartbeat")
        verbose_name_plural = _("worker heartbeats")
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.worker or 'in-process'} at {self.received_at:%Y-%m-%d %H:%M:%S}"
