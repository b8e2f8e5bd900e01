# Control Site QMS — one image for web (gunicorn), worker and beat (Celery).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    CONTROLSITE_ENV=production \
    MPLCONFIGDIR=/tmp/matplotlib

# WeasyPrint's native libraries (Pango, HarfBuzz subsetting) and a font for the PDFs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 controlsite \
    && useradd --system --uid 10001 --gid controlsite --home-dir /app --shell /usr/sbin/nologin controlsite

# Dependencies first, so a code change does not reinstall them. Every wheel is hash-checked.
WORKDIR /app
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && pip install --no-deps --require-hashes -r requirements.lock

COPY . .

# Static files are collected at build time with production storage (hashed names + manifest).
# The secret here exists only for this one command and is not kept in the image.
RUN CONTROLSITE_ENV=production \
    ALLOWED_HOSTS=build.invalid \
    DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    python manage.py collectstatic --noinput -v 0 \
    && mkdir -p /app/var/media \
    && chown -R controlsite:controlsite /app/var

USER controlsite
EXPOSE 8000

# Settings come from the environment (see .env.example); production refuses an unsafe secret.
CMD ["gunicorn", "controlsite.wsgi:application", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
