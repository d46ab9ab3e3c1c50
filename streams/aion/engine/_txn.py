"""The engine's output: one Kafka transaction per partition per batch, fenced per partition.

Every record the engine writes for a commands partition — the batch's events, visibility
rows, timer and terminal rows, activity tasks, commands to other workflows, replies, dead
letters, timer fires, retention tombstones — and the partition's intake position (a row of
the ``progress`` table, ``_progress.py``) go in one transaction of that partition's producer. Readers of engine output read
committed data only, so a batch becomes visible whole or not at all.

**Fencing (KIP-98, one producer per partition, as Kafka Streams' first exactly-once mode).**
The producer of commands partition *p* has ``transactional.id = <app id>-p<p>``. A worker that
is assigned *p* creates its producer and calls ``init_transactions`` *before* it restores the
partition's tables: the broker bumps the id's epoch, aborts the previous owner's open
transaction and refuses every later write of the previous owner's producer (it is
"fenced"). A worker that stalled past its session timeout and wakes up can therefore write
nothing more for the partitions it lost: its commit fails, and the engine drops the
partition until a rebalance gives it back (and with it a fresh producer and a fresh restore).

No transaction involves the consumer group's coordinator (no ``send_offsets_to_transaction``:
see ``_progress.py`` for why): Faust's aiokafka consumer keeps the group membership and the
assignment, and the transaction coordinator is the only broker-side party of a commit.

Transactions of different partitions run side by side (one thread each: librdkafka's
transactional calls block); records of one partition keep their order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import Any, Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Producer

from ..exceptions import AionError

log = logging.getLogger("aion.engine")

#: A record's headers: (name, value) pairs, as confluent-kafka's produce() takes them.
Headers = list[tuple[str, bytes]]
#: topic, key, value (None: a tombstone), partition (None: by key), and optionally headers
Record = (tuple[str, bytes, bytes | None, int | None]
          | tuple[str, bytes, bytes | None, int | None, Headers | None])

#: How long one transactional call (init, commit, abort) may take.
CALL_TIMEOUT_S = 30.0


class TxnError(AionError):
    """A partition's transaction did not commit: nothing of it is visible."""

    def __init__(self, partition: int, reason: str) -> None:
        super().__init__(f"partition {partition}: {reason}")
        self.partition = partition
        self.reason = reason


class Fenced(TxnError):
    """Another worker owns the partition now (its producer fenced this one): this worker
    must write nothing more for it until a rebalance assigns it again."""


class Aborted(TxnError):
    """The transaction was aborted (a record refused, a call failed): nothing is visible and
    the producer can be used again. ``record`` is the index of the refused record, if one was."""

    def __init__(self, partition: int, reason: str, record: int | None = None) -> None:
        super().__init__(partition, reason)
        self.record = record


def _is_fencing(err: KafkaError) -> bool:
    return err.fatal() or err.code() in (
        KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)


class PartitionWriter:
    """The transactional producer of one commands partition."""

    def __init__(self, partition: int, config: dict[str, Any],
                 *, before_commit: Callable[[int, Sequence[Record]], None] | None = None) -> None:
        self.partition = partition
        self._config = config
        self._producer: Producer | None = None
        self.fenced = False
        #: Test hook (fault injection): called in the writer's thread before the commit.
        self.before_commit = before_commit

    @property
    def transactional_id(self) -> str:
        return str(self._config["transactional.id"])

    def init(self, timeout: float = CALL_TIMEOUT_S) -> None:
        """Create the producer and fence every earlier producer of this partition (blocking).

        The producer connects to every broker it learns of at once (``enable.sparse.connections``
        off, :func:`Engine._output_config`). librdkafka's default connects only when a request
        needs a broker, and it drops the bootstrap connection once it has learned the brokers:
        ``init_transactions`` then found no usable connection to look for the transaction
        coordinator through and tried again after a fixed 500 ms, at random (8 of 22 bare probes
        on one broker; every partition a hand-over moved waited those 0.5 s, issue 17). A
        request for the whole cluster's metadata first avoided that (36 of 36), but took ~40 ms
        and building the answer holds the interpreter lock: with 6,000 partitions in the
        cluster, 0.1-0.3 s per partition fenced in under load, while the others waited. Eager
        connections: ~5 ms, 0 of 96 bare probes waited."""
        producer = Producer(self._config)
        try:
            producer.init_transactions(timeout)
        except KafkaException as exc:
            raise TxnError(self.partition, f"init_transactions failed: {exc.args[0].str()}") from None
        self._producer = producer

    def run(self, records: Sequence[Record]) -> list[int]:
        """One transaction (blocking) of ``records``. Returns their offsets; raises
        :class:`Fenced` or :class:`Aborted` (nothing visible)."""
        producer = self._producer
        if producer is None or self.fenced:
            raise Fenced(self.partition, "this worker's producer for the partition is closed or fenced")
        n = len(records)
        offsets = [-1] * n
        refused: list[tuple[int, str]] = []

        def report(i: int) -> Callable[[KafkaError | None, Any], None]:
            def delivered(err: KafkaError | None, msg: Any) -> None:
                if err is not None:
                    refused.append((i, f"{msg.topic()}[{msg.partition()}]: {err.str()}"))
                else:
                    offsets[i] = msg.offset()
            return delivered

        try:
            producer.begin_transaction()
            for i, rec in enumerate(records):
                topic, key, value, partition = rec[0], rec[1], rec[2], rec[3]
                kw: dict[str, Any] = {"on_delivery": report(i)}
                if partition is not None:
                    kw["partition"] = partition
                if len(rec) > 4 and rec[4]:
                    kw["headers"] = rec[4]
                while True:
                    try:
                        producer.produce(topic, value, key, **kw)
                        break
                    except BufferError:  # the local queue is full: let librdkafka drain it
                        producer.poll(0.01)
                    except KafkaException as exc:  # refused before sending (size, unknown topic)
                        refused.append((i, f"{topic}: {exc.args[0].str()}"))
                        break
                if refused:
                    break
            if refused:
                raise _Refused()
            if self.before_commit is not None:
                self.before_commit(self.partition, records)
            self._commit(producer)
        except _Refused:
            self._abort(producer)
            i, why = refused[0]
            raise Aborted(self.partition, f"Kafka refused record {i} of the transaction: {why}", i) from None
        except KafkaException as exc:
            err = exc.args[0]
            if _is_fencing(err):
                self.fenced = True
                raise Fenced(self.partition, f"fenced: {err.str()}") from None
            self._abort(producer)
            if refused:
                i, why = refused[0]
                raise Aborted(self.partition, f"Kafka refused record {i} of the transaction: {why}", i) from None
            raise Aborted(self.partition, f"transaction failed: {err.str()}") from None
        return offsets

    def _commit(self, producer: Producer) -> None:
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while True:
            try:
                producer.commit_transaction(CALL_TIMEOUT_S)
                return
            except KafkaException as exc:
                err = exc.args[0]
                if err.retriable() and not err.txn_requires_abort() and time.monotonic() < deadline:
                    continue
                raise

    def _abort(self, producer: Producer) -> None:
        try:
            producer.abort_transaction(CALL_TIMEOUT_S)
        except KafkaException as exc:
            err = exc.args[0]
            self.fenced = True  # cannot tell what the broker holds: write nothing more
            raise Fenced(self.partition, f"abort failed: {err.str()}") from None

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.flush(0)
            except Exception:  # closing: nothing to keep
                pass


class _Refused(Exception):
    pass


class Writers:
    """The engine worker's :class:`PartitionWriter` per owned commands partition."""

    def __init__(self, config: dict[str, Any], app_id: str, partitions: int) -> None:
        self._config = config
        self.app_id = app_id
        self._writers: dict[int, PartitionWriter] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, partitions),
                                                           thread_name_prefix="aion-txn")
        self.before_commit: Callable[[int, Sequence[Record]], None] | None = None

    def transactional_id(self, partition: int) -> str:
        return f"{self.app_id}-p{partition}"

    def owned(self) -> set[int]:
        """Partitions this worker may write (fenced in, not fenced out)."""
        return {p for p, w in self._writers.items() if not w.fenced}

    def held(self) -> set[int]:
        """Partitions with a producer, fenced out or not."""
        return set(self._writers)

    def get(self, partition: int) -> PartitionWriter | None:
        w = self._writers.get(partition)
        return w if w is not None and not w.fenced else None

    async def open(self, partitions: set[int]) -> set[int]:
        """Fence in ``partitions`` (each a new producer and ``init_transactions``), in parallel.
        Returns the partitions that could not be opened (logged)."""
        loop = asyncio.get_running_loop()
        todo = {p: PartitionWriter(p, dict(self._config, **{"transactional.id": self.transactional_id(p)}),
                                   before_commit=self.before_commit)
                for p in partitions if p not in self.owned()}
        if not todo:
            return set()
        t0 = time.monotonic()
        results = await asyncio.gather(*(loop.run_in_executor(self._pool, w.init) for w in todo.values()),
                                       return_exceptions=True)
        failed: set[int] = set()
        for (p, w), res in zip(todo.items(), results):
            if isinstance(res, BaseException):
                log.error("partition %d: could not fence in its transactional producer %s (%s); the partition "
                          "stays unprocessed until the next rebalance", p, w.transactional_id, res)
                failed.add(p)
            else:
                old = self._writers.pop(p, None)
                if old is not None:
                    old.close()
                self._writers[p] = w
        log.info("fenced in partitions %s (transactional producers initialised) in %.2fs",
                 sorted(set(todo) - failed), time.monotonic() - t0)
        return failed

    def close(self, partitions: set[int] | None = None) -> None:
        for p in list(self._writers) if partitions is None else partitions:
            w = self._writers.pop(p, None)
            if w is not None:
                w.close()

    async def run(self, partition: int, records: Sequence[Record]) -> list[int]:
        """One transaction of ``partition`` (see :meth:`PartitionWriter.run`)."""
        w = self._writers.get(partition)
        if w is None or w.fenced:
            raise Fenced(partition, "this worker does not own the partition (no transactional producer)")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, w.run, records)
        except Fenced:
            log.warning("partition %d: this worker was fenced (another worker owns it now); it writes nothing "
                        "more for it until a rebalance assigns it again", partition)
            raise

    def shutdown(self) -> None:
        self.close()
        self._pool.shutdown(wait=False)
