"""A minimal Faust app for test_faust_table.py: a RocksDB (rocksdict) table materialized from
the Avro events topic. Run as a worker process:

    python -m faust -A _faust_table_app worker --without-web -l info

(``--without-web`` matters: the worker command turns Faust's web server on, port 6066, whatever
the app's ``web_enabled`` says, and parallel test runs would fight over that port.)

Configured by environment (set by the test): FT_BOOTSTRAP, FT_TOPIC, FT_PARTITIONS, FT_APP_ID,
FT_DATADIR, FT_DUMP. Every 0.2 s, once the worker has recovered its tables and is not
rebalancing, it writes the table (workflow id -> seqs in the order applied) and how many events
this process applied to FT_DUMP as JSON, so the test can look inside without a web server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import faust

from aion.codec import Codec

BOOTSTRAP = os.environ["FT_BOOTSTRAP"]
TOPIC = os.environ["FT_TOPIC"]
PARTITIONS = int(os.environ["FT_PARTITIONS"])
DUMP = Path(os.environ["FT_DUMP"])

app = faust.App(
    os.environ["FT_APP_ID"],
    broker=[f"kafka://{h}" for h in BOOTSTRAP.split(",")],
    store="rocksdb://",
    datadir=os.environ["FT_DATADIR"],
    web_enabled=False,
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    table_standby_replicas=0,
    consumer_auto_offset_reset="earliest",
    broker_commit_interval=0.5,
)

events_topic = app.topic(TOPIC, partitions=PARTITIONS, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")
# Keyed by workflow id; its changelog partition is the partition of the event being handled,
# i.e. partition_for(workflow_id, n): co-partitioned with the events topic.
# No value_type: a plain JSON list. (value_type=list breaks changelog recovery in Faust 0.15:
# it expects a faust.Record there, "type object 'list' has no attribute 'from_data'".)
histories = app.Table("histories", default=list, partitions=PARTITIONS,
                      schema=faust.Schema(key_type=str, key_serializer="raw", value_serializer="json"))

codec = Codec()
applied_this_run = 0


@app.agent(events_topic)
async def materialize(stream: Any) -> None:
    global applied_this_run
    async for event in stream.events():
        ev = codec.decode_event(event.value)
        seqs = list(histories[ev.workflow_id])
        if ev.seq not in seqs:  # at-least-once delivery: a replayed event changes nothing
            histories[ev.workflow_id] = seqs + [ev.seq]
        applied_this_run += 1


@app.timer(interval=0.2)
async def dump() -> None:
    recovered = app.tables.recovery.completed.is_set() and not app.rebalancing
    if not recovered:
        return
    state = {
        "table": {k: list(v) for k, v in histories.items()},
        "applied_this_run": applied_this_run,
        "pid": os.getpid(),
    }
    tmp = DUMP.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True))
    tmp.replace(DUMP)  # atomic: the test never reads half a file
