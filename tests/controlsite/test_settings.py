"""Settings come from the environment; production refuses unsafe ones (design §9)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STRONG_SECRET = "k3J9-xQ2v7Lp0Zr8Wm4Tn6Bc1Yh5Fd9Ga2Se7Ru3Io8Pk0Lj4Hg6Fd1Sa5Qw9Er2Ty7"


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CONTROLSITE_"))}
    clean.pop("ALLOWED_HOSTS", None)
    clean.update(env)
    clean["DJANGO_SETTINGS_MODULE"] = "controlsite.settings.base"
    return subprocess.run(  # noqa: S603  (our own interpreter and manage.py)
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DJANGO_SECRET_KEY": STRONG_SECRET, "DJANGO_DEBUG": "true"}, "DJANGO_DEBUG is on"),
        (
            {"DJANGO_SECRET_KEY": "change-me-to-a-long-random-string-of-at-least-fifty-characters"},
            "DJANGO_SECRET_KEY",
        ),
        ({}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY"),
    ],
)
def test_production_refuses_to_start_with_unsafe_settings(env, message):
    result = run_manage(
        "check", CONTROLSITE_ENV="production", ALLOWED_HOSTS="qms.example.org", **env
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_production_check_deploy_is_clean(tmp_path):
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        CONTROLSITE_ENV="production",
        DJANGO_SECRET_KEY=STRONG_SECRET,
        ALLOWED_HOSTS="qms.example.org",
        DATABASE_URL=f"sqlite:///{tmp_path / 'prod.sqlite3'}",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_the_example_env_file_documents_every_setting_read_from_the_environment():
    import re

    example = (ROOT / ".env.example").read_text()
    sources = (ROOT / "controlsite" / "settings" / "base.py").read_text()
    names = set(re.findall(r'env_(?:str|bool|int|list)\(\s*"([A-Z_]+)"', sources))
    assert names, "no settings found"
    missing = sorted(name for name in names if name not in example)
    assert not missing, f".env.example lacks {missing}"
