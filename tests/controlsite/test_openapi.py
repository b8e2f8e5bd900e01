"""The OpenAPI document generates cleanly and describes the conventions integrators rely on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import call_command


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("schema") / "schema.yaml"
    call_command("spectacular", "--fail-on-warn", "--file", str(out))
    loaded: dict[str, Any] = yaml.safe_load(Path(out).read_text())
    return loaded


def test_the_schema_generates_without_warnings(schema):
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/audit-events/" in schema["paths"]


def test_every_operation_documents_problem_json_errors(schema):
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            for code in ("401", "403"):
                content = op["responses"][code]["content"]
                assert "application/problem+json" in content, f"{method} {path} {code}"


def test_posts_document_the_idempotency_key(schema):
    post = schema["paths"]["/api/v1/audit-reviews/"]["post"]
    names = {p["name"] for p in post.get("parameters", [])}
    assert "Idempotency-Key" in names


def test_signing_inputs_are_the_shared_signature_fields(schema):
    post = schema["paths"]["/api/v1/audit-reviews/"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
    fields = set(schema["components"]["schemas"][ref]["properties"])
    assert {"username", "password", "otp", "meaning", "reason"} <= fields


def test_bearer_tokens_are_a_documented_security_scheme(schema):
    assert schema["components"]["securitySchemes"]["bearerToken"]["scheme"] == "bearer"
