"""The client: start, signal, query, cancel and follow workflows over Kafka (confluent-kafka).

Every request is a :class:`~aion.model.Command` on ``<prefix>.commands`` keyed by the workflow
id (so one workflow's inputs stay ordered on one partition) with ``reply_to`` naming this
client's partition of ``<prefix>.replies``; the engine answers there and the answer is matched
to the request by command id.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import uuid
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence, Unpack, overload

from confluent_kafka import Consumer

from ..codec import Codec, partition_for
from ..converter import default_converter
from ..common.access import AUTHORIZATION_CODES, KAFKA_LOG, AccessWatch, authorization_error, fetch_metadata
from ..common.settings import Settings
from ..common.topics import TopicNames
from ..exceptions import InvalidArgumentError, PayloadTooLargeError
from ..model import now_ms, Command, CommandBody, Payload, Reply
from ..model.limits import command_problem
from ._base import A, ClientBase, R, StartOptions
from ._errors import RPCTimeoutError, TopicMissingError
from ..ops import _tracing
from ..common.kafka import AsyncProducer, consumer_config, private_group_id, producer_config
from ._replies import ReplyRouter, ReplyWaiter
from ..common.visibility import ListRequest
from ._visibility import ServedLists, WorkflowSummary, read_workflow_rows

if TYPE_CHECKING:
    from ._deployments import Deployments
    from ._handle import WorkflowHandle
    from ._schedules import ScheduleHandle, ScheduleSummary

log = logging.getLogger(__name__)

class Client(ClientBase["WorkflowHandle[Any]"]):
    """A connection to an Aion deployment (one topic prefix on one Kafka cluster).

    Create with ``await Client.connect(...)``; close with ``await client.close()`` or use it as
    an async context manager. One client serves any number of concurrent requests. The workflow
    methods (start, signal, handles) live in :class:`~aion.client._base.ClientBase`; this class
    is their Kafka transport.
    """

    # The engine sends a started workflow's RESULT to the start's reply_to: its handle keeps
    # the start's waiter (GetResult only backs it up).
    _result_follows_start = True
    _query_timeout_hint = " (its engine worker may be down or rebalancing; try again)"

    def __init__(
        self,
        settings: Settings,
        *,
        converter: Any = None,
        codec: Codec | None = None,
        rpc_timeout: float = 30.0,
        result_resend_interval: float = 5.0,
    ) -> None:
        self.settings = settings
        self.converter = converter or default_converter()
        url = getattr(settings, "schema_registry_url", None)
        self.codec = codec or (Codec(registry_url=url) if url else Codec())
        self.names = TopicNames(settings.topic_prefix)
        #: How long a start/signal/cancel/terminate waits for the engine's answer.
        self.rpc_timeout = rpc_timeout
        #: How often ``result()`` re-sends GetResult while waiting (engines keep waiters in memory).
        self.result_resend_interval = result_resend_interval
        self._base_config = settings.confluent_config()
        self._producer = AsyncProducer(
            producer_config(self._base_config, max_record_bytes=settings.max_record_bytes,
                            client_id=f"{settings.topic_prefix}.client")
        )
        self._router = ReplyRouter(self._base_config, self.names.replies, self.codec.decode_reply,
                                   prefix=settings.topic_prefix, settings=settings)
        self._partitions: int | None = None
        # Blocking reads of the events topic (history, events()) run here, not in the loop's
        # default executor, so many followers cannot starve it.
        self._readers = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="aion-client-read")
        self._connected = False

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def connect(
        cls,
        bootstrap_servers: str | None = None,
        *,
        topic_prefix: str | None = None,
        settings: Settings | None = None,
        converter: Any = None,
        codec: Codec | None = None,
        rpc_timeout: float = 30.0,
        reply_partition: int | None = None,
    ) -> "_Connecting":
        """Connect: start the producer and position this client's reply partition at its end.

        ``client = await Client.connect(...)`` (close it with ``await client.close()``), or
        ``async with Client.connect(...) as client:``.

        ``settings`` defaults to ``Settings.from_env()``; ``bootstrap_servers`` and
        ``topic_prefix`` override it when given. ``reply_partition`` pins the reply partition
        (default: one picked at random).
        """
        return _Connecting(cls._connect(
            bootstrap_servers, topic_prefix=topic_prefix, settings=settings, converter=converter,
            codec=codec, rpc_timeout=rpc_timeout, reply_partition=reply_partition))

    @classmethod
    async def _connect(
        cls,
        bootstrap_servers: str | None,
        *,
        topic_prefix: str | None,
        settings: Settings | None,
        converter: Any,
        codec: Codec | None,
        rpc_timeout: float,
        reply_partition: int | None,
    ) -> "Client":
        overrides: dict[str, Any] = {}
        if bootstrap_servers is not None:
            overrides["bootstrap_servers"] = bootstrap_servers
        if topic_prefix is not None:
            overrides["topic_prefix"] = topic_prefix
        if settings is None:
            settings = Settings.from_env(**overrides)
        elif overrides:
            settings = settings.replace(**overrides)
        client = cls(settings, converter=converter, codec=codec, rpc_timeout=rpc_timeout)
        await client._start(reply_partition)
        return client

    async def _start(self, reply_partition: int | None) -> None:
        # First the events topic's metadata: a refused login or TLS handshake, or an ACL that
        # hides the topic, fails here at once with one line (KafkaAccessError), before any
        # other connection is made.
        try:
            self._partitions = await asyncio.get_running_loop().run_in_executor(
                self._readers, self._events_partition_count)
        except BaseException:
            self._readers.shutdown(wait=False, cancel_futures=True)
            raise
        self._producer.start()
        try:
            await self._router.start(reply_partition)
        except BaseException:
            await self._router.close()
            await self._producer.close()
            raise
        self._connected = True

    def _events_partition_count(self) -> int:
        watch = AccessWatch(self.settings)
        c = Consumer(consumer_config(self._base_config, group_id=private_group_id(self.settings.topic_prefix, "meta"),
                                     client_id=f"{self.settings.topic_prefix}.client", error_cb=watch,
                                     logger=KAFKA_LOG))
        try:
            md = fetch_metadata(c, watch, 10.0, self.names.events)
            tmd = md.topics.get(self.names.events)
            if tmd is not None and tmd.error is not None and tmd.error.code() in AUTHORIZATION_CODES:
                raise authorization_error(self.settings, tmd.error, "describe", self.names.events)
            if tmd is None or tmd.error is not None or not tmd.partitions:
                raise TopicMissingError(
                    f"events topic {self.names.events!r} does not exist: create the topics first "
                    f"(`aion topics create`), or check the topic prefix ({self.settings.topic_prefix!r})"
                )
            return len(tmd.partitions)
        finally:
            c.close()

    async def close(self) -> None:
        if not self._connected:
            return
        self._connected = False
        await self._router.close()
        await self._producer.close()
        self._readers.shutdown(wait=False, cancel_futures=True)

    @property
    def reply_to(self) -> str:
        """``<replies topic>:<partition>`` this client reads its answers from."""
        return self._router.reply_to

    def partition_of(self, workflow_id: str) -> int:
        """The partition (of the commands and events topics) that holds ``workflow_id``."""
        assert self._partitions is not None, "the client is not connected"
        return partition_for(workflow_id, self._partitions)

    # ------------------------------------------------------------------ requests
    def _command(self, workflow_id: str, body: CommandBody, *, reply: bool = True) -> Command:
        return Command(
            command_id=str(uuid.uuid4()),
            workflow_id=workflow_id,
            sent_at_ms=now_ms(),
            body=body,
            reply_to=self.reply_to if reply else None,
        )

    def _check_size(self, cmd: Command, payloads: Sequence[Payload]) -> None:
        size = sum(len(p.data) for p in payloads)
        limit = self.settings.max_payload_bytes
        if size > limit:
            raise PayloadTooLargeError(
                f"{cmd.type} for workflow {cmd.workflow_id!r}: the payloads are {size} bytes, over "
                f"the limit of {limit} bytes (max_payload_bytes / AION_MAX_PAYLOAD_BYTES). Pass a "
                f"reference (a URL, a key in your storage) instead of the data"
            )

    async def send(self, cmd: Command, waiter: ReplyWaiter | None = None, payloads: Sequence[Payload] = ()) -> None:
        """Send one command (registered under ``waiter`` for the replies), wait for Kafka's ack."""
        if not self._connected:
            raise RuntimeError("the client is closed")
        self._check_size(cmd, payloads)
        value = self.codec.encode_command(cmd)
        if waiter is not None:
            self._router.register(cmd.command_id, waiter)
        span, headers = _tracing.client_span(cmd)  # (None, None) unless OpenTelemetry is configured
        try:
            fut = await self._producer.produce(self.names.commands, value, cmd.workflow_id.encode("utf-8"),
                                               headers=headers)
            await fut
        except BaseException as exc:
            _tracing.end(span, exc)
            if waiter is not None:
                self._router.unregister(cmd.command_id)
            raise
        _tracing.end(span)

    async def _tell(self, cmd: Command, payloads: Sequence[Payload], *, what: str) -> None:
        problem = command_problem(cmd)
        if problem is not None:
            raise InvalidArgumentError(f"{what} for workflow {cmd.workflow_id[:200]!r}: {problem}")
        await self.send(cmd, None, payloads)

    def new_waiter(self) -> ReplyWaiter:
        return ReplyWaiter(asyncio.get_running_loop())

    def forget(self, command_id: str) -> None:
        self._router.unregister(command_id)

    async def _ask(self, cmd: Command, payloads: Sequence[Payload], timeout: float) -> tuple[Reply, ReplyWaiter]:
        waiter = self.new_waiter()
        await self.send(cmd, waiter, payloads)
        # Shielded: a timeout must not cancel the waiter's futures (its RESULT may still come).
        return await asyncio.wait_for(asyncio.shield(waiter.ack), timeout), waiter

    def _forget(self, command_id: str) -> None:
        self.forget(command_id)

    async def _update_outcome(self, channel: Any, timeout: float | None) -> Reply:
        return await asyncio.wait_for(asyncio.shield(channel.result), timeout)

    def _no_answer(self, cmd: Command, what: str, timeout: float) -> BaseException:
        return RPCTimeoutError(
            f"{what} for workflow {cmd.workflow_id!r}: no answer from the engine within "
            f"{timeout:.1f}s (command {cmd.command_id}). Is an engine worker running "
            f"for topic prefix {self.settings.topic_prefix!r}?"
        )

    def _new_handle(self, workflow_id: str, *, run_id: str | None, result_type: Any,
                    follow_latest: bool, result_waiter: Any = None) -> "WorkflowHandle":
        from ._handle import WorkflowHandle

        return WorkflowHandle(self, workflow_id, run_id=run_id, result_type=result_type,
                              result_waiter=result_waiter, follow_latest=follow_latest)

    # Typed as Temporal's: ``start_workflow(Order.run, order, id=...)`` returns a
    # ``WorkflowHandle[R]`` whose ``result()`` is what ``Order.run`` returns (the implementation is
    # ClientBase's; a call with none or one argument is checked against the run method, one
    # with more is not).
    @overload
    async def start_workflow(self, workflow: Callable[[Any], Awaitable[R]], /, *, id: str,
                             **options: Unpack[StartOptions]) -> WorkflowHandle[R]: ...
    @overload
    async def start_workflow(self, workflow: Callable[[Any, A], Awaitable[R]], arg: A, /, *, id: str,
                             **options: Unpack[StartOptions]) -> WorkflowHandle[R]: ...
    @overload
    async def start_workflow(self, workflow: Callable[..., Awaitable[R]], arg1: Any, arg2: Any, /, *args: Any, id: str,
                             **options: Unpack[StartOptions]) -> WorkflowHandle[R]: ...
    @overload
    async def start_workflow(self, workflow: str | type, /, *args: Any, id: str,
                             **options: Unpack[StartOptions]) -> WorkflowHandle[Any]: ...
    async def start_workflow(self, workflow: Any, *args: Any, **options: Any) -> WorkflowHandle[Any]:
        return await super().start_workflow(workflow, *args, **options)

    # ------------------------------------------------------------------ workflows
    async def list_workflows(
        self, query: str | None = None, *, type: str | None = None, status: str | None = None,
        started_after: Any = None, started_before: Any = None,
        search_attributes: dict[str, Any] | None = None, limit: int | None = None, newest_first: bool = False,
        timeout: float = 10.0,
    ) -> list["WorkflowSummary"]:
        """Workflows from the visibility index (the engine's ``workflows`` table), by start time
        (oldest first; ``newest_first=True`` the other way, as Temporal lists).

        ``query`` is a list filter as Temporal's (``"WorkflowType = 'Order' AND ExecutionStatus =
        'Running' AND StartTime > '2026-12-01T00:00:00Z'"``; ``=``, ``!=``, ``<``, ``>``, ``AND``,
        ``OR``, ``IN``, ``STARTS_WITH``, ``BETWEEN``; see :mod:`aion.common.list_filter`); the
        keyword filters (type, status, start time, search attributes) narrow it further;
        ``limit`` keeps the first rows.

        Asked of the engine workers that own the partitions (``__aion.list``, answered from their
        index: the first page costs the page, not every row); when one does not answer within
        :attr:`LIST_ASK_TIMEOUT_S` (none running, or rebalancing) the table's changelog is read
        whole instead. Raises :class:`~aion.client.ListFilterError` for a filter that does not
        parse and :class:`~aion.client.VisibilityTimeoutError` when the index cannot be read whole
        within ``timeout`` seconds — never a partial list."""
        req = ListRequest.of(query, type=type, status=status, started_after=started_after,
                             started_before=started_before, search_attributes=search_attributes)
        served = await self._visibility.list(req, limit, timeout, newest_first)
        if served is not None:
            return served
        rows = await asyncio.get_running_loop().run_in_executor(None, read_workflow_rows, self.settings, timeout)
        out = req.select(rows, newest_first)
        return out[:limit] if limit is not None else out

    async def count_workflows(
        self, query: str | None = None, *, type: str | None = None, status: str | None = None,
        started_after: Any = None, started_before: Any = None,
        search_attributes: dict[str, Any] | None = None, timeout: float = 10.0,
    ) -> int:
        """How many workflows match the list filter ``query`` and the keyword filters (all of
        them without any): counted by the engines that own the partitions, or from the changelog
        (as :meth:`list_workflows`)."""
        req = ListRequest.of(query, type=type, status=status, started_after=started_after,
                             started_before=started_before, search_attributes=search_attributes)
        served = await self._visibility.count(req, timeout)
        if served is not None:
            return served
        rows = await asyncio.get_running_loop().run_in_executor(None, read_workflow_rows, self.settings, timeout)
        return len(req.select(rows))

    #: How long a list waits for an engine's answer to each page before it reads the changelog.
    LIST_ASK_TIMEOUT_S = 3.0

    @property
    def _visibility(self) -> "ServedLists":
        assert self._partitions is not None, "the client is not connected"
        return ServedLists(self, self._partitions, self.LIST_ASK_TIMEOUT_S)

    # ------------------------------------------------------------------ deploys
    @property
    def deployments(self) -> "Deployments":
        """Versioned deploys: ``create``, ``route``, ``list``, ``unload`` (``_deployments.py``)."""
        from ._deployments import Deployments

        return Deployments(self.settings, codec=self.codec)

    # ------------------------------------------------------------------ schedules
    async def create_schedule(self, schedule_id: str, **kwargs: Any) -> "ScheduleHandle":
        """Create a schedule: ``create_schedule(id, cron=... | interval=..., workflow=Order.run,
        args=[...], overlap="SKIP", catch_up="ONE", ...)`` (see :mod:`aion.client._schedules`)."""
        from ._schedules import create_schedule

        return await create_schedule(self, schedule_id, **kwargs)

    def get_schedule_handle(self, schedule_id: str) -> "ScheduleHandle":
        """A handle to schedule ``schedule_id``: pause, resume, update, trigger, delete, describe."""
        from ._schedules import ScheduleHandle

        return ScheduleHandle(self, schedule_id)

    async def list_schedules(self, *, include_deleted: bool = False) -> list["ScheduleSummary"]:
        """The deployment's schedules (from the visibility index, no query per schedule)."""
        from ._schedules import list_schedules

        return await list_schedules(self, include_deleted=include_deleted)


class _Connecting:
    """What ``Client.connect(...)`` returns: awaitable, and an async context manager."""

    def __init__(self, coro: Any) -> None:
        self._coro = coro
        self._client: Client | None = None

    def __await__(self) -> Any:
        return self._coro.__await__()

    async def __aenter__(self) -> Client:
        self._client = await self._coro
        return self._client

    async def __aexit__(self, *exc: Any) -> None:
        if self._client is not None:
            await self._client.close()
