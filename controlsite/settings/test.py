"""What the test suite overrides. The database and broker still come from the environment."""

from __future__ import annotations

import os

os.environ.setdefault("CONTROLSITE_ENV", "test")

from controlsite.settings.base import *  # noqa: F403  (settings modules re-export by design)
from controlsite.settings.base import STORAGES

# Argon2 costs 0.16 s per verify; tests log in hundreds of times.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
WHITENOISE_AUTOREFRESH = True
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}

# Tasks run in-process in tests; the Celery integration test switches eager mode off and runs a
# real worker against CELERY_BROKER_URL when one is configured.
CELERY_TASK_ALWAYS_EAGER = True
# Under pytest-xdist each worker has its own test database, so each real Celery worker must take
# only its own test process's tasks: one queue per xdist worker on the shared broker.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _XDIST_WORKER:
    CELERY_TASK_DEFAULT_QUEUE = f"controlsite-test-{_XDIST_WORKER}"

# django-otp slows repeated wrong codes down (1 s, 2 s, 4 s…); tests check the count instead.
OTP_TOTP_THROTTLE_FACTOR = 0
