"""aion.examples.subscription: monthly billing that continues as new."""

from __future__ import annotations

from datetime import timedelta

from aion.examples import subscription
from aion.examples.subscription import BILLING_PERIOD, Subscription, SubscriptionState, SubscriptionSummary


async def test_continues_as_new_every_n_periods_until_the_term_ends(make_env) -> None:
    async with make_env(subscription.WORKFLOWS, subscription.ACTIVITIES) as env:
        state = SubscriptionState(customer_id="c-1", price_cents=900, periods_per_run=3, max_periods=7)
        handle = await env.client.start_workflow(Subscription.run, state, id="sub-1")
        first_run = handle.run_id
        summary = await handle.result()

        assert summary == SubscriptionSummary(
            customer_id="c-1", status="ENDED", periods_billed=7, total_charged_cents=7 * 900,
            runs=3, last_receipt="inv-c-1-0007")

        history = await handle.history()
        assert {e.workflow_id for e in history} == {"sub-1"}
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        runs = list(dict.fromkeys(e.run_id for e in history))  # in order of appearance
        assert len(runs) == 3 and runs[0] == first_run and handle.run_id == runs[-1]
        continued = [e for e in history if e.type == "WorkflowContinuedAsNew"]
        assert [c.body.new_run_id for c in continued] == runs[1:]
        starts = [e for e in history if e.type == "WorkflowStarted"]
        assert [s.run_id for s in starts] == runs
        assert [s.body.previous_run_id for s in starts] == [None, *runs[:-1]]
        # 3 + 3 + 1 charges across the runs, one per billing period.
        charges = [e for e in history if e.type == "ActivityScheduled"]
        assert [sum(1 for c in charges if c.run_id == r) for r in runs] == [3, 3, 1]
        assert history[-1].type == "WorkflowCompleted" and history[-1].run_id == runs[-1]
        elapsed = timedelta(milliseconds=history[-1].recorded_at_ms - history[0].recorded_at_ms)
        assert elapsed >= 7 * BILLING_PERIOD

        desc = await handle.describe()
        assert (desc.status, desc.runs, desc.run_id) == ("COMPLETED", 3, runs[-1])
        replay = env.replay("sub-1")
        assert replay.ok, str(replay)


async def test_cancel_signal_ends_it_in_a_later_run(make_env) -> None:
    async with make_env(subscription.WORKFLOWS, subscription.ACTIVITIES) as env:
        state = SubscriptionState(customer_id="c-2", price_cents=500, periods_per_run=2)
        handle = await env.client.start_workflow(Subscription.run, state, id="sub-2")

        await env.sleep(BILLING_PERIOD * 2 + timedelta(days=5))  # two periods billed, then continued
        status = await handle.query(Subscription.billing_status)
        assert status == {"periods_billed": 2, "total_charged_cents": 1000, "run_number": 2}

        await handle.signal(Subscription.cancel_subscription)
        summary = await handle.result()
        assert (summary.status, summary.periods_billed, summary.runs) == ("CANCELLED", 2, 2)
        history = await handle.history()
        assert len({e.run_id for e in history}) == 2
