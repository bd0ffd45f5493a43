"""A small AI agent that charges its user for every answer, with the Reload SDK.

It runs offline: ``answer_with_model`` stands in for a real LLM call and returns a
response shaped like OpenAI's Chat Completions. For each question the agent

1. previews the charge (is the balance enough for a typical answer?),
2. calls the model,
3. reports the usage and charges the user what the price rule says,
4. when the charge fails (402), asks the user to top up, then reports the same
   usage again with the same idempotency key, which charges it exactly once.

Run a Reload server, connect a user to your organization (OAuth), then::

    export RELOAD_API_URL=http://127.0.0.1:8000
    export RELOAD_CLIENT_ID=... RELOAD_CLIENT_SECRET=...
    export RELOAD_ACCESS_TOKEN=...   # the user's access token
    export RELOAD_AGENT_ID=agt_...
    python examples/agent_with_billing.py "What is on my March invoice?"

Without a question on the command line it asks for questions until an empty line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from decimal import Decimal
from typing import Any

from reload_billing.client import (
    PaymentRequiredError,
    Reload,
    ReloadError,
    ReloadUser,
    usage_from_openai,
)
from reload_billing.pricing import PriceRule

# What the user pays: the provider's price of the model, plus 30 %, at least 0.001 USD.
PRICE = PriceRule(markup_percent=30, minimum_charge=Decimal("0.001"))
MODEL = "gpt-4o-mini"
TYPICAL_ANSWER = {
    "llm_model": MODEL,
    "llm_provider": "openai",
    "input_tokens": 2_000,
    "output_tokens": 800,
}


def answer_with_model(question: str) -> dict[str, Any]:
    """A stand-in for ``openai.chat.completions.create``: same response shape."""
    answer = f"Here is what I found about {question.strip().rstrip('?')!r}: it looks fine."
    prompt_tokens = 350 + 2 * len(question.split())
    completion_tokens = 2 * len(answer.split())
    return {
        "id": f"chatcmpl-offline-{int(time.time() * 1000)}",
        "object": "chat.completion",
        "model": f"{MODEL}-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def charge_for_answer(
    user: ReloadUser, agent_id: str, question: str, response: dict[str, Any]
) -> None:
    usage = usage_from_openai(response)
    key: str | None = None  # the SDK makes one; after a 402 we reuse the recorded one
    while True:
        try:
            record = user.report_usage(
                agent_id,
                f"Answered: {question[:180]}",
                price=PRICE,
                charge_user=True,
                usage_type="token_usage",
                idempotency_key=key,
                **usage,
            )
        except PaymentRequiredError as error:
            if error.record is None:
                raise
            key = error.record.idempotency_key
            print(
                f"\nYour Reload balance could not cover {error.record.total_cost} USD "
                f"({error.reason}). Top up at {user.owner.base_url}/ and press Enter "
                "to pay for this answer, or type q to stop."
            )
            if input("> ").strip().lower() == "q":
                raise SystemExit(1) from None
            continue
        print(f"[charged {record.charged_amount} USD, record {record.id}]")
        return


def handle(user: ReloadUser, agent_id: str, question: str) -> None:
    typical = PRICE.quote(TYPICAL_ANSWER).total_cost
    preview = user.preview_charge(agent_id, typical, "Answer a question")
    if not preview.can_charge:
        print(
            f"Note: your balance ({preview.balance} USD) may not cover an answer "
            f"(about {typical} USD): {preview.reason}."
        )
    response = answer_with_model(question)
    print(response["choices"][0]["message"]["content"])
    charge_for_answer(user, agent_id, question, response)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", nargs="*", help="questions to answer (default: ask)")
    parser.add_argument("--agent", default=os.environ.get("RELOAD_AGENT_ID"), help="AI agent id")
    parser.add_argument("--token", default=os.environ.get("RELOAD_ACCESS_TOKEN"), help="user token")
    args = parser.parse_args()
    if not args.agent or not args.token:
        parser.error("set RELOAD_AGENT_ID and RELOAD_ACCESS_TOKEN (or --agent and --token)")
    try:
        with Reload() as reload:
            user = reload.for_user(args.token)
            print(
                f"Hello {user.user().user.first_name}! Answers are charged to your Reload account."
            )
            questions = args.questions or iter(lambda: input("\nQuestion: ").strip(), "")
            for question in questions:
                handle(user, args.agent, question)
    except ReloadError as error:
        print(f"Reload error: {error}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
