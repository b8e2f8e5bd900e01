"""The Celery application. With no CELERY_BROKER_URL, tasks run in-process (eager)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlsite.settings.base")

app = Celery("controlsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
