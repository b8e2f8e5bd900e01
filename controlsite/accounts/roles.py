"""The role vocabulary of design §1, and what each role may do.

Roles are data, capabilities are what code asks about. Views, services and API permissions ask
`permissions.user_can(user, Capability.X)`; nothing compares role strings by hand.
"""

from __future__ import annotations

from enum import StrEnum

from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    CONTROL_SITE_QA = "qa", _("Control Site QA")
    QP = "qp", _("Qualified Person")
    SITE_LEAD = "site_lead", _("Site lead")
    SITE_OPERATOR = "site_operator", _("Site operator")
    TRAINER = "trainer", _("Trainer")
    INSPECTOR = "inspector", _("Inspector")
    INTEGRATOR = "integrator", _("Integrator")
    SYSADMIN = "sysadmin", _("System administrator")


class Capability(StrEnum):
    """Things the kernel and the apps ask permission for."""

    VIEW_ALL_SITES = "view_all_sites"
    VIEW_AUDIT_TRAIL = "view_audit_trail"
    REVIEW_AUDIT_TRAIL = "review_audit_trail"
    SIGN = "sign"
    CERTIFY_BATCH = "certify_batch"
    MANAGE_QUALITY_RECORDS = "manage_quality_records"
    RECORD_MANUFACTURE = "record_manufacture"
    MANAGE_TRAINING = "manage_training"
    USE_API = "use_api"
    MANAGE_OWN_TOKENS = "manage_own_tokens"
    MANAGE_ACCOUNTS = "manage_accounts"
    MANAGE_WEBHOOKS = "manage_webhooks"


# Segregation of duties (DI-03): the administrator manages accounts and the webhook subscriptions
# (where the system sends its notices; no GMP record changes) and nothing else; it never holds
# SIGN, so it can never sign, approve or release.
ROLE_CAPABILITIES: dict[Role, frozenset[Capability]] = {
    Role.CONTROL_SITE_QA: frozenset(
        {
            Capability.VIEW_ALL_SITES,
            Capability.VIEW_AUDIT_TRAIL,
            Capability.REVIEW_AUDIT_TRAIL,
            Capability.SIGN,
            Capability.MANAGE_QUALITY_RECORDS,
            Capability.MANAGE_TRAINING,
            Capability.USE_API,
            Capability.MANAGE_OWN_TOKENS,
            Capability.MANAGE_WEBHOOKS,
        }
    ),
    Role.QP: frozenset(
        {
            Capability.VIEW_ALL_SITES,
            Capability.VIEW_AUDIT_TRAIL,
            Capability.SIGN,
            Capability.CERTIFY_BATCH,
            Capability.USE_API,
        }
    ),
    Role.SITE_LEAD: frozenset({Capability.SIGN, Capability.RECORD_MANUFACTURE, Capability.USE_API}),
    Role.SITE_OPERATOR: frozenset(
        {Capability.SIGN, Capability.RECORD_MANUFACTURE, Capability.USE_API}
    ),
    Role.TRAINER: frozenset({Capability.SIGN, Capability.MANAGE_TRAINING, Capability.USE_API}),
    Role.INSPECTOR: frozenset(
        {Capability.VIEW_ALL_SITES, Capability.VIEW_AUDIT_TRAIL, Capability.USE_API}
    ),
    Role.INTEGRATOR: frozenset(
        {Capability.RECORD_MANUFACTURE, Capability.USE_API, Capability.MANAGE_OWN_TOKENS}
    ),
    Role.SYSADMIN: frozenset({Capability.MANAGE_ACCOUNTS, Capability.MANAGE_WEBHOOKS}),
}

# Roles whose holders only read: every unsafe request from them is refused.
READ_ONLY_ROLES: frozenset[Role] = frozenset({Role.INSPECTOR})

# A role that may not be combined with any other on one account (DI-03).
EXCLUSIVE_ROLES: frozenset[Role] = frozenset({Role.SYSADMIN})
