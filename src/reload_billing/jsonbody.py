"""JSON in and out without binary floats.

Requests are parsed with every non-integer number as a ``Decimal``; NaN and
infinities are refused. Answers are written by orjson with each ``Decimal`` as an
exact JSON number (``0.000185``, never ``1.85e-4`` through a float).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

from .errors import InvalidRequest
from .money import format_usd

MAX_DEPTH = 32


def _reject_constant(name: str) -> Any:
    raise InvalidRequest(f"{name} is not a valid JSON number", code="invalid_json")


def _depth(value: Any, limit: int) -> int:
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


def parse_object(raw: bytes, *, optional: bool = False) -> dict[str, Any]:
    """A request body that must be one JSON object."""
    if not raw.strip():
        if optional:
            return {}
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except InvalidRequest:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InvalidRequest(f"invalid JSON: {error}", code="invalid_json") from None
    if not isinstance(value, dict):
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise InvalidRequest(f"JSON nested deeper than {MAX_DEPTH} levels", code="invalid_json")
    if "\\u" in text:  # only escapes can smuggle in NUL or a lone surrogate
        _check_text(value)
    return value


def _storable(text: str) -> bool:
    """Text every database can store: UTF-8 encodable and without NUL."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800"
        return False
    return True


def _check_text(value: Any) -> None:
    """400 naming the first key or string that holds NUL or a lone surrogate."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not _storable(item):
                raise InvalidRequest(
                    f"{path or 'the body'} holds a NUL character or a lone surrogate",
                    param=path or None,
                    code="invalid_field",
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if not _storable(key):
                    raise InvalidRequest(
                        "a field name holds a NUL character or a lone surrogate",
                        param=path or None,
                        code="invalid_field",
                    )
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{n}]") for n, child in enumerate(item))


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(format_usd(value))
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)
