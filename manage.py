#!/usr/bin/env python
"""Django's command-line utility for Control Site QMS."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlsite.settings.base")
    # Commands run from a checkout default to development; the servers (wsgi, asgi, Celery)
    # default to production, and the image and compose file set production explicitly.
    os.environ.setdefault("CONTROLSITE_ENV", "development")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
