"""Stored files: the SHA-256 of what is on disk, read outside any transaction (DI-07)."""

from __future__ import annotations

import hashlib

from django.core.files.storage import Storage, default_storage

CHUNK = 1024 * 1024


def stored_sha256(name: str, storage: Storage | None = None) -> str:
    """The SHA-256 (hex) of a stored file, read in chunks. Raises OSError if it cannot be read.
    File I/O: call it outside a transaction."""
    digest = hashlib.sha256()
    with (storage or default_storage).open(name, "rb") as stored:
        for chunk in iter(lambda: stored.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
