"""Settings for Control Site QMS, read from the environment only.

`CONTROLSITE_ENV` picks the mode: `production` (the default for the servers — wsgi, asgi,
Celery — so a deployment is secure unless told otherwise; `manage.py` run from a checkout
defaults to `development`), `development` (what `make demo` uses) or `test`. Production
refuses to start with DEBUG on or with a missing, short or example secret key. Every variable
is documented in `.env.example`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from controlsite.settings.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("CONTROLSITE_VAR_DIR", str(BASE_DIR / "var")))

ENVIRONMENT = env_str("CONTROLSITE_ENV", "production").strip().lower()
if ENVIRONMENT not in {"production", "development", "test"}:
    raise ImproperlyConfigured(
        f"CONTROLSITE_ENV must be production, development or test, not {ENVIRONMENT!r}"
    )
IS_PRODUCTION = ENVIRONMENT == "production"

# The value `.env.example` ships with; production refuses it.
EXAMPLE_SECRET_KEY = "change-me-to-a-long-random-string-of-at-least-fifty-characters"
_DEVELOPMENT_SECRET_KEY = "django-insecure-development-only-never-use-this-key-in-production-0000"

DEBUG = env_bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "" if IS_PRODUCTION else _DEVELOPMENT_SECRET_KEY)
ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", [] if IS_PRODUCTION else ["127.0.0.1", "localhost", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

if IS_PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("Refusing to start: DJANGO_DEBUG is on in production.")
    if (
        not SECRET_KEY
        or SECRET_KEY in {EXAMPLE_SECRET_KEY, _DEVELOPMENT_SECRET_KEY}
        or SECRET_KEY.startswith("django-insecure")
        or len(SECRET_KEY) < 50
        or len(set(SECRET_KEY)) < 5
    ):
        raise ImproperlyConfigured(
            "Refusing to start: set DJANGO_SECRET_KEY to a random string of 50+ characters "
            "(not the example value). For a local demo, run `make demo` instead."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("Refusing to start: set ALLOWED_HOSTS in production.")

#
# Applications
#

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "simple_history",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "controlsite",
    "sites",
    "training",
    "masterfile",
    "batches",
    "deviations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "controlsite.audit.middleware.RequestContextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "controlsite.accounts.middleware.SessionSecurityMiddleware",
    "controlsite.audit.middleware.RequestUserContextMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "controlsite.urls"
WSGI_APPLICATION = "controlsite.wsgi.application"
ASGI_APPLICATION = "controlsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "controlsite.context_processors.shell",
                "controlsite.notifications.context_processors.unread_notifications",
            ],
        },
    },
]

#
# Database
#

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'controlsite.sqlite3'}")
DATABASES: dict[str, dict[str, Any]] = {
    "default": dict(
        dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes SQLite's write lock when a transaction opens, which serialises writers the
    # way the audit hash chain needs (PostgreSQL uses an advisory lock instead).
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

#
# Accounts, passwords and sessions
#

AUTH_USER_MODEL = "controlsite.User"
AUTHENTICATION_BACKENDS = ["controlsite.accounts.backends.LockoutAwareBackend"]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"

SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_AGE = env_int("SESSION_MAX_AGE_SECONDS", 12 * 3600)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# Failed logins and wrong signature passwords share one counter (ES-08).
LOCKOUT_THRESHOLD = env_int("LOCKOUT_THRESHOLD", 5)
LOCKOUT_WINDOW_SECONDS = env_int("LOCKOUT_WINDOW_SECONDS", 15 * 60)
# 0 keeps an account locked until an administrator lifts the lock.
LOCKOUT_DURATION_SECONDS = env_int("LOCKOUT_DURATION_SECONDS", 30 * 60)
IDLE_TIMEOUT_SECONDS = env_int("IDLE_TIMEOUT_SECONDS", 15 * 60)
MFA_REQUIRED_ROLES = env_list("MFA_REQUIRED_ROLES", ["qp", "sysadmin"])
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Control Site QMS")

#
# Security headers (production values are the defaults; `check --deploy` is clean)
#

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=IS_PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=IS_PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=IS_PRODUCTION)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if IS_PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=IS_PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=IS_PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Only trust X-Forwarded-For from a proxy the operator names (audit rows record the client IP).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

#
# Internationalisation and time (AT-08: stored in UTC, shown with the zone)
#

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("TIME_ZONE", "Europe/London")
USE_I18N = True
USE_TZ = True

#
# Static and uploaded files (everything served locally, no CDN)
#

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = VAR_DIR / "media"
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if IS_PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Outside production, serve static files straight from the source folders (no collectstatic).
WHITENOISE_USE_FINDERS = not IS_PRODUCTION
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1024 * 1024)
IDEMPOTENCY_KEY_TTL_SECONDS = env_int("IDEMPOTENCY_KEY_TTL_SECONDS", 24 * 3600)
SITE_EVIDENCE_MAX_BYTES = env_int("SITE_EVIDENCE_MAX_BYTES", 10 * 1024 * 1024)
# Days from the event until an MHRA notification is due, per kind (see sites/choices.py), e.g.
# "site_suspended=1,site_added=30". The regulations read do not fix these periods.
REGULATORY_NOTIFICATION_DUE_DAYS: dict[str, int] = {
    key.strip(): int(value)
    for key, _, value in (
        item.partition("=") for item in env_list("REGULATORY_NOTIFICATION_DUE_DAYS")
    )
}

#
# E-mail
#

EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if IS_PRODUCTION
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "qms@localhost")

#
# REST API (design §6)
#

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlsite.api.auth.ApiTokenAuthentication",
        "controlsite.api.auth.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["controlsite.api.permissions.ApiAccessPermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["controlsite.api.parsers.BoundedJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "controlsite.api.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "controlsite.api.filters.StrictFilterBackend",
    ],
    "DEFAULT_SCHEMA_CLASS": "controlsite.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "controlsite.api.errors.problem_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_VERSIONING_CLASS": None,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "Control Site QMS API",
    "DESCRIPTION": (
        "REST API of Control Site QMS. Authenticate with `Authorization: Bearer <token>`. "
        "Errors are `application/problem+json` with a stable `code`. Lists are cursor-paginated. "
        "POST accepts an `Idempotency-Key` header. Signing actions take `username`, `password`, "
        "`otp` (where the role needs it), `meaning` and `reason`."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {},
}

#
# Celery (design §7): in-process when no broker is configured
#

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 15 * 60)
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("CELERY_WORKER_MAX_TASKS_PER_CHILD", 50)
# KiB. A worker process whose resident memory has grown past this is replaced once its current
# task ends: one large PDF export (WeasyPrint keeps every laid-out page) must not leave a worker
# holding that memory for the next hundred tasks. One master-file export peaks well under
# 600 MB (tests/bench/masterfile.py), so the default leaves room for it.
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("CELERY_WORKER_MAX_MEMORY_PER_CHILD", 700_000)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE: dict[str, Any] = {
    "controlsite-health-ping": {
        "task": "controlsite.health_ping",
        "schedule": 300.0,
    },
    "controlsite-idempotency-purge": {
        "task": "controlsite.idempotency_purge",
        "schedule": 3600.0,
    },
    "sites-mhra-notification-reminders": {
        "task": "sites.regulatory_notifications_remind",
        "schedule": 6 * 3600.0,
    },
    "masterfile-review-reminders": {
        "task": "masterfile.review_reminders",
        "schedule": 6 * 3600.0,
    },
    # Sends pending webhook deliveries that are due: retries, and any whose message was lost.
    "webhooks-deliver-due": {
        "task": "webhooks.deliver_due",
        "schedule": 60.0,
    },
    # Batch signals (out-of-limit values, failed results, COI mismatches) become deviations.
    "deviations-signals": {
        "task": "deviations.signals_process",
        "schedule": 60.0,
    },
    # Comparability across sites (issue 8): every product against its reference limits, and
    # each active manufacturing site's yearly check scheduled (and reminders of overdue ones).
    "batches-comparability-sweep": {
        "task": "batches.comparability_sweep",
        "schedule": 6 * 3600.0,
    },
    "batches-comparability-checks": {
        "task": "batches.comparability_checks_schedule",
        "schedule": 24 * 3600.0,
    },
    "deviations-escalate-overdue": {
        "task": "deviations.escalate_overdue",
        "schedule": 3600.0,
    },
    # Procedure versions into force, training reminders, overdue escalation, renewals.
    "training-round": {
        "task": "training.round",
        "schedule": 3600.0,
    },
}

# Training (TR-03, TR-04): the refresher's validity for new refresher items, and how many days
# before an expiry a record shows as due soon.
TRAINING_REFRESHER_MONTHS = env_int("TRAINING_REFRESHER_MONTHS", 12)
TRAINING_DUE_SOON_DAYS = env_int("TRAINING_DUE_SOON_DAYS", 30)

# Deviation due dates (DV-04): working days to triage, calendar days to close, per class.
DEVIATION_TRIAGE_WORKING_DAYS = env_int("DEVIATION_TRIAGE_WORKING_DAYS", 1)
DEVIATION_CLOSURE_DAYS = {
    "minor": env_int("DEVIATION_CLOSURE_DAYS_MINOR", 30),
    "major": env_int("DEVIATION_CLOSURE_DAYS_MAJOR", 30),
    "critical": env_int("DEVIATION_CLOSURE_DAYS_CRITICAL", 30),
}
# Task modules outside `<app>.tasks` that workers must know (autodiscovery finds only those).
CELERY_IMPORTS = ["controlsite.webhooks.tasks"]

#
# Webhooks (design §6; controlsite/webhooks/services.py)
#

# Seconds to wait for a receiver to connect and to answer, per attempt.
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10)
# Attempts before a delivery is failed (then QA or the administrator may retry it).
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 6)
# Production accepts only https receivers unless this is set (e.g. on a closed network).
WEBHOOK_ALLOW_HTTP = env_bool("WEBHOOK_ALLOW_HTTP", default=False)

#
# Logging
#

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
        # In-process tasks (no broker) would log every run; a worker in production keeps INFO.
        **(
            {"celery": {"level": "WARNING"}, "kombu": {"level": "ERROR"}}
            if not CELERY_BROKER_URL
            else {}
        ),
    },
}

CONTROLSITE_VERSION = "0.1.0"
