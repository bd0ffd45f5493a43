"""Token usage out of provider responses, ready for ``report_usage`` and ``PriceRule``.

Neither ``openai`` nor ``anthropic`` is imported: a response may be the SDK's object
(attributes or ``model_dump()``), a dict, or the raw JSON text.

    usage = usage_from_openai(completion)
    user.report_usage(agent_id, "Answered a question", price=rule, charge_user=True, **usage)

``input_tokens`` always counts every input token, cached ones included (OpenAI's
convention; Anthropic's separate cache counts are added in). ``cached_input_tokens``
and ``cache_write_input_tokens`` are the cheaper and dearer parts of them: used for
pricing, never sent to the server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict


class ProviderUsage(TypedDict):
    llm_model: str | None
    llm_provider: str
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cached_input_tokens: int
    cache_write_input_tokens: NotRequired[int]


def _as_data(response: Any) -> Any:
    if isinstance(response, str | bytes | bytearray):
        return json.loads(response)
    model_dump = getattr(response, "model_dump", None)
    if callable(model_dump):
        return model_dump()
    return response


def _get(source: Any, *path: str) -> Any:
    """``source[a][b]`` for mappings, ``source.a.b`` for objects; None when absent."""
    value = source
    for name in path:
        if value is None:
            return None
        value = value.get(name) if isinstance(value, Mapping) else getattr(value, name, None)
    return value


def _count(source: Any, *path: str) -> int:
    value = _get(source, *path)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"usage.{'.'.join(path)} is not a token count: {value!r}")
    return value


def _usage(data: Any, provider: str) -> Any:
    usage = _get(data, "usage")
    if usage is None:
        raise ValueError(f"this {provider} response has no usage (streamed without usage?)")
    return usage


def _model(data: Any) -> str | None:
    model = _get(data, "model")
    return model if isinstance(model, str) and model else None


def usage_from_openai(response: Any) -> ProviderUsage:
    """Usage of an OpenAI Chat Completions or Responses API answer."""
    data = _as_data(response)
    usage = _usage(data, "OpenAI")
    if _get(usage, "prompt_tokens") is not None or _get(usage, "completion_tokens") is not None:
        input_tokens = _count(usage, "prompt_tokens")
        output_tokens = _count(usage, "completion_tokens")
        cached = _count(usage, "prompt_tokens_details", "cached_tokens")
    else:
        input_tokens = _count(usage, "input_tokens")
        output_tokens = _count(usage, "output_tokens")
        cached = _count(usage, "input_tokens_details", "cached_tokens")
    total = _count(usage, "total_tokens") or input_tokens + output_tokens
    return ProviderUsage(
        llm_model=_model(data),
        llm_provider="openai",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total,
        cached_input_tokens=min(cached, input_tokens),
    )


def usage_from_anthropic(response: Any) -> ProviderUsage:
    """Usage of an Anthropic Messages API answer.

    Anthropic's ``input_tokens`` leaves out cache reads and writes; here they are
    added back so that ``input_tokens`` is every input token.
    """
    data = _as_data(response)
    usage = _usage(data, "Anthropic")
    uncached = _count(usage, "input_tokens")
    cache_read = _count(usage, "cache_read_input_tokens")
    cache_write = _count(usage, "cache_creation_input_tokens")
    output_tokens = _count(usage, "output_tokens")
    input_tokens = uncached + cache_read + cache_write
    return ProviderUsage(
        llm_model=_model(data),
        llm_provider="anthropic",
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
        cached_input_tokens=cache_read,
        cache_write_input_tokens=cache_write,
    )


__all__ = ["ProviderUsage", "usage_from_anthropic", "usage_from_openai"]
