"""Request bodies the route reads itself: parsed by Pydantic straight from the bytes, and
documented in /openapi.json as if FastAPI had read them.

The predict routes are the hot path: ``model_validate_json`` on the raw body skips FastAPI's
content-type parsing, the stdlib ``json.loads`` and a second pass over the resulting dict.
V2 inference reads its body itself too (the binary tensor extension).
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)
_REF = "#/components/schemas/{model}"


def parse_json(body: bytes, model: type[ModelT]) -> ModelT:
    """``body`` as ``model``; a bad one is the usual 422 naming the field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


def body_doc(
    model: type[BaseModel], description: str | None = None, **other_media: dict[str, Any]
) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads ``model`` itself (list the model in
    ``document_bodies`` too); ``other_media``: more content types it takes."""
    body: dict[str, Any] = {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}},
            **other_media,
        },
    }
    if description:
        body["description"] = description
    return {"requestBody": body}


def document_bodies(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add the models (and the models they use) to /openapi.json's components."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=_REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    base = app.openapi

    def openapi() -> dict[str, Any]:
        document = base()
        document.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
