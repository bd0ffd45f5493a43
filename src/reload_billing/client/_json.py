"""JSON without binary floats for money.

The stdlib encoder cannot write a ``Decimal`` as a JSON number, and going through
``float`` would change the amount (``0.1`` is not one tenth in binary). Bodies are
written here by hand: a ``Decimal`` becomes its exact positional digits
(``Decimal("1.85E-4")`` -> ``0.000185``). Answers are read with every non-integer
number as a ``Decimal``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel

_encode_string = json.JSONEncoder(ensure_ascii=False).encode


def to_money(value: object, name: str) -> Decimal:
    """An amount given as ``Decimal``, ``int`` or ``str``; a ``float`` is refused."""
    if isinstance(value, float):
        raise TypeError(
            f"{name} must be a Decimal, int or str, not float: a binary float cannot hold "
            f"most amounts exactly (write Decimal({str(value)!r}) or {str(value)!r})"
        )
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise TypeError(f"{name} must be a Decimal, int or str, not {type(value).__name__}")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name} is not a number: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return amount


def format_decimal(value: Decimal) -> str:
    """Exact positional notation: never an exponent, never through a float."""
    if not value.is_finite():
        raise ValueError(f"cannot write {value} as a JSON number")
    text = format(value, "f")
    return "0" if text in ("-0", "-0.0") else text


def _timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(
            "timestamps must be timezone-aware (e.g. datetime.now(timezone.utc)), "
            f"not the naive {value.isoformat()}"
        )
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_string(value))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, Decimal):
        out.append(format_decimal(value))
    elif isinstance(value, float):
        # Only for free-form fields (model parameters such as temperature); money
        # is refused earlier by to_money().
        out.append(json.dumps(value, allow_nan=False))
    elif isinstance(value, datetime):
        out.append(_encode_string(_timestamp(value)))
    elif isinstance(value, date):
        out.append(_encode_string(value.isoformat()))
    elif isinstance(value, BaseModel):
        _write(value.model_dump(by_alias=True), out)
    elif isinstance(value, Mapping):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            if index:
                out.append(",")
            out.append(_encode_string(key))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")


def dumps(value: Any) -> str:
    """JSON text with ``Decimal`` as exact numbers and timestamps as RFC 3339."""
    out: list[str] = []
    _write(value, out)
    return "".join(out)


def encode(value: Any) -> bytes:
    return dumps(value).encode("utf-8")


def loads(text: str | bytes) -> Any:
    """Parse an answer with every non-integer number as a ``Decimal``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(text, parse_float=Decimal)
