"""In-app notices: a notice's severity is one the list knows how to show."""

from __future__ import annotations

import pytest

from controlsite.notifications.models import Notification
from controlsite.notifications.services import SEVERITIES, notify
from tests.personas import make_persona

pytestmark = pytest.mark.django_db


def test_a_severity_the_list_cannot_show_is_refused_and_nothing_is_written():
    qa = make_persona("qa")
    with pytest.raises(ValueError, match="danger"):
        notify(recipients=[qa], subject="Overdue", severity="danger")
    assert not Notification.objects.exists()
    choices = {value for value, _label in Notification._meta.get_field("severity").flatchoices}
    assert choices == set(SEVERITIES)
    notify(recipients=[qa, qa], subject="Overdue", severity="block")
    assert Notification.objects.get().severity == "block"
