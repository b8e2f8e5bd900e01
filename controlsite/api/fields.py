"""Serializer fields every app's API shares."""

from __future__ import annotations

from typing import Any

from django.db import models
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers


class NamedChoiceField(serializers.ChoiceField):
    """A choice field documented as a named enum (`SiteStatusEnum`, `SiteKindEnum`, ...).

    Several resources have a `status` or a `kind` with different vocabularies; naming each enum
    after its choices class keeps the OpenAPI document free of enum-naming collisions.
    """

    def __init__(self, choices_class: type[models.TextChoices], **kwargs: Any) -> None:
        self.choices_class = choices_class
        super().__init__(choices=choices_class.choices, **kwargs)


class NamedChoiceFieldExtension(OpenApiSerializerFieldExtension):  # type: ignore[no-untyped-call]
    target_class = NamedChoiceField

    def map_serializer_field(self, auto_schema: Any, direction: Any) -> Any:
        choices_class = self.target.choices_class
        name = f"{choices_class.__name__}Enum"
        component = ResolvedComponent(  # type: ignore[no-untyped-call]
            name=name,
            type=ResolvedComponent.SCHEMA,
            object=name,
            schema={
                "type": "string",
                "enum": list(choices_class.values),
                "description": "\n".join(
                    f"* `{value}` - {label}" for value, label in choices_class.choices
                ),
            },
        )
        auto_schema.registry.register_on_missing(component)
        return component.ref
