"""How the pages write money, credits, counts and dates (never through a float)."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

from ..db import from_us
from ..money import CREDITS_PER_USD, from_nanos

EPOCH = date(1970, 1, 1).toordinal()


def _grouped(amount: Decimal, min_places: int) -> str:
    text = format(amount, "f")
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0")
    fraction = fraction + "0" * (min_places - len(fraction))
    negative = whole.startswith("-")
    whole = f"{int(whole.lstrip('-') or 0):,}"
    return ("-" if negative else "") + whole + (f".{fraction}" if fraction else "")


def money(nanos: int | None, min_places: int = 2) -> str:
    """``$1,234.50``; small amounts keep every digit that was recorded: ``$0.000185``."""
    if nanos is None:
        return "—"
    text = _grouped(from_nanos(int(nanos)), min_places)
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


def money_total(nanos: int | None) -> str:
    """Sums, to the cent (half-even); a non-zero sum under a cent is "<$0.01".
    The pages put the exact amount in a title beside it; CSV files are exact."""
    if nanos is None:
        return "—"
    amount = from_nanos(int(nanos))
    cents = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    if cents == 0 and amount != 0:
        return "<$0.01" if amount > 0 else "-<$0.01"
    text = _grouped(cents, 2)
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


def balance(nanos: int) -> str:
    """A balance, rounded down to the cent: never more than can be spent."""
    amount = from_nanos(int(nanos)).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    text = _grouped(amount, 2)
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


def money_short(nanos: int) -> str:
    """For chart axes: ``$12``, ``$1.5k``, ``$0.02``."""
    amount = from_nanos(int(nanos))
    if amount >= 1000:
        return f"${_grouped((amount / 1000).quantize(Decimal('0.1'), ROUND_HALF_EVEN), 0)}k"
    if amount >= 1 or amount == 0:
        return f"${_grouped(amount.quantize(Decimal('0.01'), ROUND_HALF_EVEN), 0)}"
    return f"${_grouped(amount.normalize(), 2)}"


def credits(nanos: int) -> str:
    """Reload credits, 1 USD = 100 credits, to two places: ``1,234.5``."""
    amount = from_nanos(int(nanos) * CREDITS_PER_USD).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_EVEN
    )
    return _grouped(amount, 0)


def number(value: int | None) -> str:
    return "—" if value is None else f"{int(value):,}"


def datetime_text(micros: int | None) -> str:
    return "—" if micros is None else from_us(int(micros)).strftime("%Y-%m-%d %H:%M")


def date_text(micros: int | None) -> str:
    return "—" if micros is None else from_us(int(micros)).strftime("%Y-%m-%d")


def time_text(micros: int | None) -> str:
    return "" if micros is None else from_us(int(micros)).strftime("%H:%M")


def iso(micros: int | None) -> str:
    return "" if micros is None else from_us(int(micros)).isoformat().replace("+00:00", "Z")


def day(day_number: int) -> str:
    return date.fromordinal(EPOCH + int(day_number)).isoformat()


def day_short(day_number: int) -> str:
    return date.fromordinal(EPOCH + int(day_number)).strftime("%b %d").replace(" 0", " ")


def plain_amount(nanos: int | None) -> str:
    """Exact USD for CSV files: ``0.000185``."""
    if nanos is None:
        return ""
    return format(from_nanos(int(nanos)), "f")


FILTERS = {
    "money": money,
    "money_short": money_short,
    "money_total": money_total,
    "balance": balance,
    "credits_text": credits,
    "number": number,
    "when": datetime_text,
    "date_only": date_text,
    "time_only": time_text,
    "iso": iso,
    "day": day,
    "day_short": day_short,
    "usd_plain": plain_amount,
}
