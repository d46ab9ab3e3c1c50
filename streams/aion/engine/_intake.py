"""What a command must satisfy before the engine runs it.

Anyone who can write to ``<prefix>.commands`` can send the engine anything, so every decoded
command is checked here before it reaches its workflow:

- its fields are within the limits of :mod:`aion.model.limits` (ids, names, task queues,
  durations, timestamps — the client checks the same ones before sending);
- a task queue is also short enough to be a topic once prefixed (``<prefix>.activities.<queue>``
  is at most 249 characters, Kafka's limit);
- its ``reply_to`` names a topic the engine answers on — this prefix's replies topic or one of
  ``AION_REPLY_TOPICS`` — at a partition that exists. Anything else would let a sender make the
  engine write a record with a chosen key into ``<prefix>.events``, another prefix's topics or a
  table's changelog.

A command that fails a check is not run: it is dead-lettered with the reason, and its sender
gets an ERROR ``InvalidArgumentError`` reply when its ``reply_to`` is one the engine answers on
(see ``Engine._refuse_invalid``).

Partition counts of the reply topics are read from the cluster's metadata when the engine
starts, and again (off the batch path, at most every 10 s) when a command names a partition
beyond the known count, so a replies topic that grew is answered on once the refresh is in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from ..model import Command
from ..model.limits import command_problem
from ..common.settings import Settings
from ..common.topics import TopicNames

log = logging.getLogger("aion.engine")

#: Kafka's longest topic name.
MAX_TOPIC_CHARS = 249
#: Seconds between metadata refreshes prompted by an unknown reply partition.
REFRESH_EVERY_S = 10.0


class Intake:
    """The checks above, for one engine (see the module docs).

    ``partition_counts(topics)`` reads the partition count of each topic that exists (a blocking
    metadata call; run at construction and in an executor after).
    """

    def __init__(self, settings: Settings, names: TopicNames,
                 partition_counts: Callable[[list[str]], dict[str, int]]) -> None:
        self.names = names
        self.reply_topics = (names.replies, *settings.reply_topic_list)
        self._partition_counts = partition_counts
        self._counts: dict[str, int] = {}
        self._refreshed_at = -1e9
        self._refreshing: asyncio.Future[None] | None = None
        self._loaded = False

    def load(self) -> None:
        """Read the reply topics' partition counts (blocking: the engine runs it in an executor
        before it reads commands). Until a read succeeds, reply partitions are not range-checked
        (a partition that does not exist then fails its transaction, and the command is
        dead-lettered one by one)."""
        self._refreshed_at = time.monotonic()
        try:
            self._counts = self._partition_counts(list(self.reply_topics))
            self._loaded = True
        except Exception as exc:
            log.warning("could not read the partition counts of the reply topics %s (%s); trying again when a "
                        "command names one", list(self.reply_topics), exc)

    def problem(self, cmd: Command, now_ms: int) -> str | None:
        """Why ``cmd`` must not run (``None`` when it may)."""
        problem = command_problem(cmd, now_ms)
        if problem is None:
            problem = self._queue_problem(cmd)
        if problem is None and cmd.reply_to is not None:
            problem = self.reply_problem(cmd.reply_to)
        return problem

    def answers(self, reply_to: str | None) -> bool:
        """Whether the engine sends replies to ``reply_to``."""
        return bool(reply_to) and self.reply_problem(reply_to) is None  # type: ignore[arg-type]

    def reply_problem(self, reply_to: str) -> str | None:
        """Why the engine will not answer on ``reply_to`` (``None`` when it will)."""
        topic, sep, part = reply_to.rpartition(":")
        if not sep or not topic or not part.isdigit() or len(part) > 9:
            return f"reply_to {reply_to[:300]!r} is not '<topic>:<partition>'"
        if topic not in self.reply_topics:
            return (f"reply_to names topic {topic[:300]!r}; the engine answers only on "
                    f"{', '.join(self.reply_topics)} (AION_REPLY_TOPICS adds topics)")
        count = self._counts.get(topic)
        if not self._loaded:
            self._refresh_soon()
            return None
        if count is None or int(part) >= count:
            self._refresh_soon()
            if count is None:
                return f"reply_to names topic {topic!r}, which does not exist (or its metadata is not read yet)"
            return f"reply_to names partition {int(part)} of {topic!r}, which has {count} partitions"
        return None

    def _queue_problem(self, cmd: Command) -> str | None:
        start = getattr(cmd.body, "start", cmd.body)
        queue = getattr(start, "task_queue", None)
        if isinstance(queue, str) and len(self.names.activity_tasks(queue)) > MAX_TOPIC_CHARS:
            return (f"task queue {queue[:80]!r} makes the topic {self.names.activity_tasks(queue)[:80]!r}... longer "
                    f"than Kafka's {MAX_TOPIC_CHARS} characters; use a shorter name")
        return None

    def _refresh_soon(self) -> None:
        now = time.monotonic()
        if now - self._refreshed_at < REFRESH_EVERY_S or (self._refreshing and not self._refreshing.done()):
            return
        self._refreshed_at = now
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._refreshing = loop.run_in_executor(None, self.load)
