"""USD amounts: parsing, rounding and formatting.

Money lives in the database as an integer count of nano-dollars (10^-9 USD) and in
Python as a ``Decimal``. Nothing here ever touches a binary float: JSON numbers are
parsed straight into ``Decimal`` (see ``jsonbody.py``), and answers are written from
``Decimal`` so that ``0.000185`` stays ``0.000185``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

NANOS_PER_USD = 1_000_000_000
CREDITS_PER_USD = 100
NANO = Decimal("0.000000001")
MAX_REPORT_USD = Decimal(1_000_000)


class MoneyError(ValueError):
    """An amount that is not a finite, non-negative number within bounds."""


def to_decimal(value: object) -> Decimal:
    """Turn a JSON-ish value into a Decimal without passing through a float.

    ``bool`` is refused (``True`` is an ``int`` in Python, never an amount); a
    ``float`` is refused because its binary value is not what the client wrote.
    """
    if isinstance(value, bool) or value is None:
        raise MoneyError("must be a number")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation as exc:
            raise MoneyError("must be a number") from exc
    else:
        raise MoneyError("must be a number")
    if not result.is_finite():
        raise MoneyError("must be a finite number")
    return result


def parse_usd(
    value: object, *, maximum: Decimal | None = MAX_REPORT_USD, allow_zero: bool = True
) -> Decimal:
    """Parse an amount in USD, rounded half-to-even to one nano-dollar."""
    amount = to_decimal(value)
    if amount < 0:
        raise MoneyError("must not be negative")
    if maximum is not None and amount > maximum:
        raise MoneyError(f"must not exceed {format_usd(maximum)} USD")
    rounded = amount.quantize(NANO, rounding=ROUND_HALF_EVEN)
    if not allow_zero and rounded == 0:
        raise MoneyError("must be greater than zero")
    return rounded


def to_nanos(amount: Decimal) -> int:
    """Exact conversion of a (rounded) USD Decimal to nano-dollars."""
    return int(amount.quantize(NANO, rounding=ROUND_HALF_EVEN).scaleb(9))


def from_nanos(nanos: int) -> Decimal:
    """Nano-dollars to a normalised USD Decimal (``5500000000`` -> ``Decimal('5.5')``)."""
    return _normalize(Decimal(nanos).scaleb(-9))


def _normalize(amount: Decimal) -> Decimal:
    # normalize() would write 100 as 1E+2; keep a plain exponent of 0 for integers.
    normalized = amount.normalize()
    if normalized == normalized.to_integral_value():
        # Through int: exact at any size (quantize fails beyond 28 digits).
        return Decimal(int(normalized))
    return normalized


def format_usd(amount: Decimal) -> str:
    """Plain decimal text, no exponent: ``Decimal('1E-9')`` -> ``'0.000000001'``."""
    return format(_normalize(amount), "f")


def nanos_to_credits(nanos: int) -> Decimal:
    """Reload credits (1 USD = 100 credits)."""
    return from_nanos(nanos * CREDITS_PER_USD)


def split_fee(charge_nanos: int, fee_percent: Decimal) -> int:
    """The platform fee of a charge, rounded half-to-even to one nano-dollar."""
    fee = (Decimal(charge_nanos) * fee_percent / 100).quantize(Decimal(1), ROUND_HALF_EVEN)
    return max(0, min(int(fee), charge_nanos))


def refund_fee_share(
    charged_nanos: int, fee_nanos: int, refunded_before: int, refund_nanos: int
) -> int:
    """The part of the platform fee returned with a refund.

    Computed on the running total so that refunds in many pieces return exactly the
    whole fee when the whole charge is refunded, never a nano more.
    """
    if charged_nanos == 0:
        return 0

    def fee_for(refunded: int) -> int:
        return (fee_nanos * refunded) // charged_nanos

    return fee_for(refunded_before + refund_nanos) - fee_for(refunded_before)
