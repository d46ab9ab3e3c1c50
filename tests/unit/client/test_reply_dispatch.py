"""The reply inbox hands each reply to the waiter of its command id and skips the others."""

import asyncio

from aion.client._replies import ReplyRouter, ReplyWaiter
from aion.codec import Codec
from aion.model import Reply


async def test_dispatch_by_command_id_skips_foreign_and_garbage_records() -> None:
    codec = Codec()
    router = ReplyRouter({}, "aion.replies", codec.decode_reply, prefix="aion")
    mine = ReplyWaiter(asyncio.get_running_loop())
    router.register("cmd-1", mine)
    other = Reply("cmd-2", "wf", "ACCEPTED")
    reply = Reply("cmd-1", "wf", "QUERY", run_id="r")
    router._dispatch([
        (b"cmd-2", codec.encode_reply(other)),  # another client's
        (b"cmd-1", b"not avro"),  # undecodable: logged, skipped
        (b"cmd-1", None),
        (b"cmd-1", codec.encode_reply(reply)),
    ])
    assert mine.ack.done() and mine.ack.result() == reply


async def test_dropped_waiters_are_forgotten() -> None:
    router = ReplyRouter({}, "aion.replies", Codec().decode_reply, prefix="aion")
    router.register("cmd-1", ReplyWaiter(asyncio.get_running_loop()))
    import gc

    gc.collect()
    assert "cmd-1" not in router._waiters
