"""``python -m aion.bench.intake``: what the engine's intake checks (``engine/_intake.py``, the
limits of ``aion.model.limits``) cost per command, in microseconds — no broker needed.

Prints the median of several timed repeats for the commands of a one-activity workflow (its
start, the activity's completion) and a signal. Compare with the engine's whole cost per
workflow (``aion bench throughput``: about 3 ms of engine time per workflow on the development
machine) to see the share the checks take.
"""

from __future__ import annotations

import statistics
import time
import timeit

from ..engine._intake import Intake
from ..common.settings import Settings
from ..common.topics import TopicNames
from ..model import ActivityTaskCompleted, Command, Payload, SignalWorkflow, StartWorkflow


def measure(repeats: int = 7, number: int = 20_000) -> dict[str, float]:
    """Microseconds per check, median of ``repeats`` runs of ``number`` checks, by command type."""
    intake = Intake(Settings(topic_prefix="aion"), TopicNames("aion"), lambda topics: {"aion.replies": 12})
    intake.load()
    now = int(time.time() * 1000)
    json = "application/json"
    commands = [
        Command("5f0c8a8e-3c1d-4f7e-9a51-0d6c2b7e9f10", "order-123456", now,
                StartWorkflow("OrderSaga", [Payload(json, b'{"order": 42}')], task_queue="default",
                              request_id="shop:order-123456", execution_timeout_ms=3_600_000,
                              search_attributes={"region": "eu"}), reply_to="aion.replies:3"),
        Command("order-123456:run:1:1:done", "order-123456", now,
                ActivityTaskCompleted("run-1", "1", 1, Payload(json, b'"ok"'), worker="worker-1")),
        Command("9a51-signal", "order-123456", now, SignalWorkflow("approve", [Payload(json, b'"lee"')]),
                reply_to="aion.replies:3"),
    ]
    out = {}
    for cmd in commands:
        runs = timeit.repeat(lambda cmd=cmd: intake.problem(cmd, now), number=number, repeat=repeats)
        out[cmd.type] = statistics.median(runs) / number * 1e6
    return out


def main() -> None:
    for kind, us in measure().items():
        print(f"{kind:24s} {us:6.2f} µs per command")


if __name__ == "__main__":
    main()
