"""Request bodies: strict Pydantic models, errors that name the field, OpenAPI."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body read by hand (so that numbers never pass through float)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema(by_alias=True)}},
        }
    }


def validation_error(error: ValidationError) -> InvalidRequest:
    """The first problem of a validation error, naming its field."""
    first = error.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"] if not str(part).startswith("function-")]
    param = ".".join(loc) or None
    if first["type"] == "extra_forbidden":
        message = f"unknown field {param!r}"
        code = "unknown_field"
    elif first["type"] == "missing":
        message = f"{param} is required"
        code = "missing_field"
    else:
        text = first["msg"].removeprefix("Value error, ")
        message = f"{param}: {text}" if param else text
        code = "invalid_field"
    if param is None and "totalCost" in message:
        param = "totalCost"
    return InvalidRequest(message, param=param, code=code)


def parse(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise validation_error(error) from None
