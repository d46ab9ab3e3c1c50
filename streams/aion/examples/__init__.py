"""Runnable examples of Aion workflows; each has a test in the time-skipping environment.

- :mod:`aion.examples.hello` — one activity.
- :mod:`aion.examples.order_saga` — a saga with compensations in reverse order (the demo).
- :mod:`aion.examples.approval` — a deadline raced against a signal, with a query.
- :mod:`aion.examples.subscription` — monthly billing that continues as new.
- :mod:`aion.examples.nightly_digest` — a cron workflow (``cron_schedule``) whose child has a
  ``retry_policy``, as written for Temporal.

Every module exports ``WORKFLOWS`` and ``ACTIVITIES``, the lists a worker registers
(``aion worker --workflows aion.examples.order_saga``).
"""

EXAMPLES = (
    "aion.examples.hello",
    "aion.examples.order_saga",
    "aion.examples.approval",
    "aion.examples.subscription",
    "aion.examples.nightly_digest",
)
