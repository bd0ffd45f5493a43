"""Property-based tests (hypothesis).

- Money: parsing, rounding, formatting and the fee split, for any amount.
- The ledger: random sequences of top-ups, charges (with idempotency keys, replays
  and retries), refunds, refused operations and units of work that fail half-way,
  run through the real services and the real group-commit writer on SQLite and
  PostgreSQL, each step checked against a plain model of what the balances must be.
"""

from __future__ import annotations

import json
from concurrent.futures import Future
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from reload_billing import jsonbody
from reload_billing.db import from_us, rfc3339, to_us
from reload_billing.errors import Conflict, InvalidRequest, ReloadError
from reload_billing.ledger import service as ledger
from reload_billing.ledger.models import accounts
from reload_billing.money import (
    MAX_REPORT_USD,
    MoneyError,
    format_usd,
    from_nanos,
    parse_usd,
    refund_fee_share,
    split_fee,
    to_nanos,
)
from reload_billing.usage import service as usage
from reload_billing.usage.schemas import RefundRequest, UsageReport
from reload_billing.users import service as users
from tests.conftest import seed_tenant
from tests.reliability.audit import FIGURES

NANO = Decimal("0.000000001")
COUNTS: dict[str, int] = {}


def _count(name: str) -> None:
    COUNTS[name] = COUNTS.get(name, 0) + 1


def teardown_module() -> None:
    if COUNTS:
        FIGURES.mkdir(parents=True, exist_ok=True)
        (FIGURES / "properties.json").write_text(json.dumps(COUNTS, indent=2, sort_keys=True))


# --- money ----------------------------------------------------------------------

amounts = st.decimals(min_value=0, max_value=MAX_REPORT_USD, allow_nan=False, places=None)


@given(amounts)
@settings(max_examples=500)
def test_parsing_rounds_half_to_even_to_a_nanodollar(amount):
    _count("money")
    expected = amount.quantize(NANO, rounding=ROUND_HALF_EVEN)
    assert parse_usd(amount) == expected
    assert parse_usd(str(amount)) == expected
    assert from_nanos(to_nanos(parse_usd(amount))) == expected


@given(st.integers(min_value=0, max_value=10**15), st.integers(min_value=0, max_value=9))
@settings(max_examples=300)
def test_exact_ties_go_to_the_even_nanodollar(nanos, digit):
    _count("money")
    tie = from_nanos(nanos) + Decimal(5) * NANO / 10  # halfway to the next nano-dollar
    rounded = to_nanos(parse_usd(tie, maximum=None))
    assert rounded == (nanos if nanos % 2 == 0 else nanos + 1)
    # Anything past the tie rounds up, anything before it down.
    above = from_nanos(nanos) + (Decimal(5) + Decimal(digit + 1) / 10) * NANO / 10
    below = from_nanos(nanos) + Decimal(digit) * NANO / 10 if digit < 5 else from_nanos(nanos)
    assert to_nanos(parse_usd(above, maximum=None)) == nanos + 1
    assert to_nanos(parse_usd(below, maximum=None)) == nanos


@given(st.integers(min_value=-(2**62), max_value=2**62))
@settings(max_examples=500)
def test_formatting_is_exact_and_never_an_exponent(nanos):
    _count("money")
    text = format_usd(from_nanos(nanos))
    assert "e" not in text.lower()
    assert to_nanos(Decimal(text)) == nanos
    parsed = jsonbody.parse_object(jsonbody.dumps({"amount": from_nanos(nanos)}))["amount"]
    assert to_nanos(Decimal(parsed)) == nanos  # JSON out and back in, no float on the way


@given(
    st.one_of(
        st.decimals(max_value=Decimal("-0.000000001"), allow_nan=False, allow_infinity=False),
        st.decimals(min_value=MAX_REPORT_USD + NANO, allow_nan=False, allow_infinity=False),
        st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), "NaN", "1e"]),
        st.floats(allow_nan=True),
        st.booleans(),
        st.none(),
        st.text(alphabet="abcxyz-+.,", max_size=6),
    )
)
@settings(max_examples=300)
def test_bad_amounts_are_refused(value):
    _count("money")
    with pytest.raises(MoneyError):
        parse_usd(value)


@given(
    st.integers(min_value=0, max_value=10**15),
    st.decimals(min_value=0, max_value=100, allow_nan=False, places=4),
)
@settings(max_examples=500)
def test_the_fee_is_within_the_charge_and_rounded_half_to_even(charge, percent):
    _count("money")
    fee = split_fee(charge, percent)
    assert 0 <= fee <= charge
    exact = Decimal(charge) * percent / 100
    assert abs(Decimal(fee) - exact) <= Decimal("0.5")
    assert fee == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@given(
    st.integers(min_value=1, max_value=10**13),
    st.decimals(min_value=0, max_value=100, allow_nan=False, places=3),
    st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=20),
)
@settings(max_examples=500)
def test_refunds_in_pieces_return_exactly_the_whole_fee(charge, percent, weights):
    _count("money")
    fee = split_fee(charge, percent)
    total = sum(weights)
    pieces = [charge * w // total for w in weights]
    pieces[-1] += charge - sum(pieces)
    refunded = returned = 0
    for piece in pieces:
        share = refund_fee_share(charge, fee, refunded, piece)
        assert 0 <= share <= piece
        refunded += piece
        returned += share
        assert returned <= fee
    assert refunded == charge and returned == fee


# --- the ledger against a model ---------------------------------------------------

FEES = [Decimal(0), Decimal("2.5"), Decimal(5), Decimal("33.333"), Decimal(100)]
nanos_amounts = st.one_of(
    st.sampled_from([0, 1, 999, 10**9, 3 * 10**9 + 1]),
    st.integers(min_value=0, max_value=4 * 10**9),
)


class Boom(Exception):
    """A unit of work that fails after it has already moved money."""


def ledger_machine(db):
    class LedgerModel(RuleBasedStateMachine):
        records = Bundle("records")

        @initialize(fee=st.sampled_from(FEES))
        def setup(self, fee):
            self.fee = fee
            self.tenants = [seed_tenant(db, balance="10"), seed_tenant(db, balance="0")]
            self.balance = [10 * 10**9, 0]
            self.earnings = [0, 0]
            self.platform_start = self.platform_balance()
            self.platform = 0
            self.keys: dict[tuple[int, str], dict] = {}  # (tenant, key) -> what it was
            self.charged: dict[str, dict] = {}  # record id -> charge and refunds so far
            self.steps = 0

        def platform_balance(self):
            with db.read() as conn:
                return ledger.balance(conn, ledger.PLATFORM_FEES_ACCOUNT)

        def context(self, conn, tenant, key=None):
            return usage.authenticate(
                conn,
                client_id=tenant.client_id,
                client_secret=tenant.client_secret,
                access_token=tenant.access_token,
                agent_id=tenant.agent_id,
                idempotency_key=key,
            )

        def report_work(self, t, nanos, key):
            tenant = self.tenants[t]
            report = UsageReport.model_validate(
                {
                    "aiAgentId": tenant.agent_id,
                    "description": "model step",
                    "totalCost": from_nanos(nanos),
                    "chargeUser": True,
                    **({"idempotencyKey": key} if key else {}),
                }
            )

            def work(conn):
                organization, token, prefetched = self.context(conn, tenant, key)
                return usage.report_usage(
                    conn, organization, token, report, fee_percent=self.fee, prefetched=prefetched
                )

            return work

        def expect_charge(self, t, nanos, key):
            """What the model says a report does; updates the model."""
            if key is not None and (t, key) in self.keys:
                earlier = self.keys[(t, key)]
                if earlier["nanos"] != nanos:
                    return "conflict", earlier
                if earlier["status"] == "completed":
                    return "replay", earlier
            if nanos > 0 and nanos > self.balance[t]:
                outcome = {"status": "failed", "nanos": nanos}
                if key is not None:
                    self.keys.setdefault((t, key), outcome)
                return "failed", self.keys.get((t, key), outcome)
            fee = split_fee(nanos, self.fee) if nanos > 0 else 0
            self.balance[t] -= nanos
            self.earnings[t] += nanos - fee
            self.platform += fee
            outcome = {"status": "completed", "nanos": nanos, "fee": fee}
            if key is not None:
                self.keys.setdefault((t, key), {}).update(outcome)
                outcome = self.keys[(t, key)]
            return "charged", outcome

        def check_outcome(self, expected, result):
            kind, model = expected
            _count(f"ledger_{kind}")
            if kind == "conflict":
                assert isinstance(result, Conflict), result
                return None
            assert not isinstance(result, Exception), result
            record = result.record
            if kind == "replay":
                assert result.replayed and result.status_code == 201
                assert record["id"] == model["record"]
                return None
            if "record" in model:
                assert record["id"] == model["record"]
            model["record"] = record["id"]
            if kind == "failed":
                assert result.status_code == 402 and record["status"] == "failed"
                assert record["failureReason"] == "insufficient_balance"
                return None
            assert result.status_code == 201 and record["status"] == "completed"
            assert to_nanos(Decimal(str(record["chargedAmount"]))) == (
                model["nanos"] if model["nanos"] > 0 else 0
            )
            if model["nanos"] > 0:
                return record["id"]
            return None

        def run_charge(self, t, nanos, key):
            _count("ledger_steps")
            expected = self.expect_charge(t, nanos, key)
            try:
                result = db.writer.run(self.report_work(t, nanos, key))
            except ReloadError as error:
                result = error
            record_id = self.check_outcome(expected, result)
            if record_id is None or record_id in self.charged:
                return multiple()
            self.charged[record_id] = {
                "t": t,
                "nanos": nanos,
                "fee": expected[1]["fee"],
                "refunded": 0,
                "fee_back": 0,
            }
            return record_id

        @rule(target=records, t=st.integers(0, 1), nanos=nanos_amounts)
        def charge(self, t, nanos):
            return self.run_charge(t, nanos, None)

        @rule(
            target=records,
            t=st.integers(0, 1),
            nanos=st.sampled_from([10**8, 7 * 10**8, 4 * 10**9]),
            key=st.sampled_from(["k1", "k2", "k3"]),
        )
        def charge_with_key(self, t, nanos, key):
            return self.run_charge(t, nanos, key)

        @rule(t=st.integers(0, 1), nanos=st.integers(min_value=1, max_value=20 * 10**9))
        def top_up(self, t, nanos):
            _count("ledger_steps")
            tenant = self.tenants[t]
            db.write(
                lambda conn: users.credit(
                    conn, user_id=tenant.user_id, amount=nanos, description="model"
                )
            )
            self.balance[t] += nanos

        @rule(record=records, share=st.integers(min_value=1, max_value=1200), key=st.booleans())
        def refund(self, record, share, key):
            _count("ledger_steps")
            state = self.charged[record]
            tenant = self.tenants[state["t"]]
            left = state["nanos"] - state["refunded"]
            amount = None if share > 1000 else max(1, state["nanos"] * share // 1000)
            wanted = left if amount is None else amount
            idempotency_key = f"r-{self.steps}" if key else None
            self.steps += 1

            def work(conn):
                organization, _, _ = self.context(conn, tenant)
                return usage.refund(
                    conn,
                    organization,
                    None,
                    record,
                    RefundRequest.model_validate(
                        {} if amount is None else {"amount": from_nanos(amount)}
                    ),
                    idempotency_key,
                )

            try:
                transaction, replayed = db.writer.run(work)
            except InvalidRequest as refused:
                assert left == 0 or wanted > left, refused
                _count("ledger_refund_refused")
                return
            _count("ledger_refund")
            assert not replayed and 0 < wanted <= left
            assert to_nanos(Decimal(str(transaction["amount"]))) == wanted
            charged, fee = state["nanos"], state["fee"]
            back_total = fee * (state["refunded"] + wanted) // charged
            fee_back = back_total - state["fee_back"]
            assert to_nanos(Decimal(str(transaction["platformFee"]))) == fee_back
            state["refunded"] += wanted
            state["fee_back"] = back_total
            self.balance[state["t"]] += wanted
            self.earnings[state["t"]] -= wanted - fee_back
            self.platform -= fee_back

        @rule(
            t=st.integers(0, 1),
            nanos=st.integers(min_value=1, max_value=10**9),
            size=st.integers(1, 6),
        )
        def batch_with_a_failure(self, t, nanos, size):
            """Several charges in one group commit, one of which moves money and then
            fails: it must leave no trace, and the others must all count."""
            _count("ledger_steps")
            tenant = self.tenants[t]
            report_work = self.report_work(t, nanos, None)

            def failing(conn):
                organization, token, _ = self.context(conn, tenant)
                top_up = ledger.top_up(
                    conn,
                    billing_account_id=token.billing_account_id,
                    user_id=token.user_id,
                    amount=5,
                )
                ledger.charge(
                    conn,
                    billing_account_id=token.billing_account_id,
                    earnings_account_id=organization.earnings_account_id,
                    amount=3,
                    fee_percent=Decimal(50),
                    usage_record_id="use_never",
                    organization_id=organization.id,
                    user_id=token.user_id,
                    description="fails after moving money",
                )
                assert top_up.balance_after is not None
                raise Boom

            futures: list[Future] = []
            expectations = []
            for n in range(size):
                if n == size // 2:
                    futures.append(db.writer.submit(failing))
                    expectations.append(None)
                futures.append(db.writer.submit(report_work))
                expectations.append(self.expect_charge(t, nanos, None))
            for future, expected in zip(futures, expectations, strict=True):
                if expected is None:
                    _count("ledger_failed_unit_of_work")
                    with pytest.raises(Boom):
                        future.result()
                    continue
                record_id = self.check_outcome(expected, future.result())
                if record_id is not None:
                    self.charged[record_id] = {
                        "t": t,
                        "nanos": nanos,
                        "fee": expected[1]["fee"],
                        "refunded": 0,
                        "fee_back": 0,
                    }

        @invariant()
        def balances_match_the_model(self):
            if not hasattr(self, "tenants"):
                return
            with db.read() as conn:
                found = dict(conn.execute(select(accounts.c.id, accounts.c.balance)).all())
                verification = ledger.verify(conn)
            assert verification.ok and verification.entries_sum == 0, verification.as_dict()
            for t, tenant in enumerate(self.tenants):
                assert found[tenant.billing_account_id] == self.balance[t] >= 0
                assert found[tenant.earnings_account_id] == self.earnings[t]
            assert found[ledger.PLATFORM_FEES_ACCOUNT] - self.platform_start == self.platform

    return LedgerModel


def test_random_ledger_histories_match_the_model(db):
    run_state_machine_as_test(
        ledger_machine(db),
        settings=settings(
            max_examples=20,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )


# Every instant from year 1 to year 9999, in microseconds since the epoch.
instants = st.integers(
    min_value=to_us(datetime(1, 1, 1, tzinfo=UTC)),
    max_value=to_us(datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
)


@given(st.lists(instants, min_size=1, max_size=5))
def test_timestamps_are_exact_both_ways_and_written_as_rfc3339(moments: list[int]) -> None:
    for micros in moments:  # several in a row: the text of the last second is reused
        assert to_us(from_us(micros)) == micros
        text = rfc3339(micros)
        assert text is not None and text.endswith("Z")
        assert datetime.fromisoformat(text.replace("Z", "+00:00")) == from_us(micros)
        assert (micros % 1_000_000 == 0) == ("." not in text)
