"""engine/_intake.py: which reply addresses the engine answers on, and topic-length limits that
depend on the prefix (no broker: the partition counts are handed in)."""

from __future__ import annotations

from aion.engine._intake import Intake
from aion.engine.settings import Settings
from aion.engine.topics import TopicNames
from aion.model import Command, SignalWorkflow, StartWorkflow


def intake(prefix: str = "shop", counts: dict[str, int] | None = None, **kw) -> Intake:  # type: ignore[no-untyped-def]
    settings = Settings(topic_prefix=prefix, **kw)
    i = Intake(settings, TopicNames(prefix), lambda topics: {t: n for t, n in (counts or {}).items() if t in topics})
    i.load()
    return i


def test_only_this_prefix_replies_topic_and_the_allow_list_are_answered() -> None:
    i = intake(counts={"shop.replies": 4, "shop.answers.eu": 2}, reply_topics="shop.answers.eu")
    assert i.reply_problem("shop.replies:3") is None
    assert i.reply_problem("shop.answers.eu:1") is None
    assert "has 4 partitions" in (i.reply_problem("shop.replies:4") or "")
    assert "has 2 partitions" in (i.reply_problem("shop.answers.eu:2") or "")
    for target in ("shop.events:0", "other.replies:0", "shop-engine-timer_terminal-changelog:0"):
        assert "the engine answers only on shop.replies, shop.answers.eu" in (i.reply_problem(target) or ""), target
    for shape in ("shop.replies", "shop.replies:", ":1", "shop.replies:-1", "shop.replies:1e3", "shop.replies:" + "9" * 12):
        assert "is not '<topic>:<partition>'" in (i.reply_problem(shape) or ""), shape
    assert i.answers("shop.replies:0") and not i.answers("shop.events:0") and not i.answers(None)


def test_a_reply_topic_that_does_not_exist_is_refused() -> None:
    i = intake(counts={}, reply_topics="shop.answers.eu")
    assert "does not exist" in (i.reply_problem("shop.answers.eu:0") or "")


def test_unknown_counts_do_not_refuse_before_the_metadata_is_read() -> None:
    def fail(topics):  # type: ignore[no-untyped-def]
        raise RuntimeError("broker away")

    i = Intake(Settings(topic_prefix="shop"), TopicNames("shop"), fail)
    i.load()
    assert i.reply_problem("shop.replies:7") is None  # the transaction would refuse a partition that is not there
    assert i.reply_problem("shop.events:0") is not None  # the topic is checked all the same


def test_a_task_queue_whose_topic_would_be_too_long_for_kafka() -> None:
    long_prefix = "p" * 150
    i = intake(prefix=long_prefix, counts={f"{long_prefix}.replies": 1})
    cmd = Command("c", "wf", 1, StartWorkflow("T", [], task_queue="q" * 100))
    assert "longer than Kafka's 249 characters" in (i.problem(cmd, 1) or "")
    assert i.problem(Command("c", "wf", 1, StartWorkflow("T", [], task_queue="q" * 10)), 1) is None
    assert i.problem(Command("c", "wf", 1, SignalWorkflow("s", [])), 1) is None
