"""What every training page shares: running one service and showing its refusal on the page
again, under the service's status code (400 bad input, 403 not allowed, 404 not visible, 409
refused by the record's state, 422 signature refused)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from controlsite.errors import ApplicationError, PermissionRefusedError
from controlsite.signatures.forms import SignatureForm
from controlsite.signatures.services import SignatureRefusedError

PAGE_SIZE = 50


def refused(request: HttpRequest, exc: ApplicationError) -> int:
    if isinstance(exc, PermissionRefusedError):
        raise PermissionDenied(exc.message) from exc
    messages.error(request, exc.message)
    return exc.status_code


def run(
    request: HttpRequest,
    again: Callable[[int], HttpResponse],
    call: Callable[[], Any],
    sig: SignatureForm | None = None,
) -> tuple[Any, HttpResponse | None]:
    """Run one service; a refusal is shown on the page again (a refused signature inside its
    dialog). After a signing, the dialog remembers it for the session (ES-06)."""
    try:
        result = call()
    except SignatureRefusedError as exc:
        if sig is not None:
            sig.add_error(None, exc.message)
        messages.error(request, exc.message)
        return None, again(exc.status_code)
    except ApplicationError as exc:
        return None, again(refused(request, exc))
    if sig is not None:
        sig.mark_signed()
    return result, None


def invalid(request: HttpRequest, what: str) -> int:
    messages.error(request, f"{what}: correct the fields marked below.")
    return 400
