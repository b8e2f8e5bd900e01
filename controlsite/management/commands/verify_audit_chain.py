"""`manage.py verify_audit_chain`: prove the audit event chain is whole (AT-04).

Exits 0 when every row's hash and link check out, 1 naming the first bad row otherwise.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from controlsite.audit.services import audit_chain_verify


class Command(BaseCommand):
    help = "Verify the SHA-256 hash chain of the audit trail; exit non-zero at the first bad row."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from-seq", type=int, default=1, help="First event to check.")
        parser.add_argument("--to-seq", type=int, default=None, help="Last event to check.")

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_chain_verify(from_seq=options["from_seq"], to_seq=options["to_seq"])
        if report.first_break is not None:
            bad = report.first_break
            raise CommandError(
                f"Audit chain BROKEN at event seq={bad.seq} (id={bad.event_id}): {bad.problem}. "
                f"{report.checked} events before it verified.",
                returncode=1,
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Audit chain intact: {report.checked} events verified "
                f"(up to seq {report.last_seq})."
            )
        )
