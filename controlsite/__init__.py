"""Control Site QMS: the project package and the shared quality kernel."""

from controlsite.celery import app as celery_app

__version__ = "0.1.0"

__all__ = ["__version__", "celery_app"]
