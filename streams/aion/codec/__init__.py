"""Avro encoding of Aion's Kafka records, and the Kafka-compatible partitioner.

```python
from aion.codec import Codec, CodecError, partition_for
codec = Codec()                          # Avro single-object encoding (C3 01 + fingerprint + body)
codec = Codec(registry_url="mock://x")   # Confluent wire format (00 + schema id + body)
data = codec.encode_event(event); event = codec.decode_event(data)
partition_for("order-42", 12)            # same partition as Kafka's default (murmur2) partitioner
```

The schemas are the ``.avsc`` files in ``schemas/`` (``$AION_SCHEMAS_DIR`` to override).
"""

from ._codec import CONFLUENT_MAGIC, SINGLE_OBJECT_MARKER, Codec, Task
from ._errors import CodecError, SchemaLoadError
from ._fastread import event_reader
from ._partition import murmur2, partition_for
from ._schemas import SCHEMAS_DIR_ENV, locate_schemas_dir

__all__ = [
    "Codec",
    "CodecError",
    "event_reader",
    "SchemaLoadError",
    "Task",
    "partition_for",
    "murmur2",
    "locate_schemas_dir",
    "SCHEMAS_DIR_ENV",
    "SINGLE_OBJECT_MARKER",
    "CONFLUENT_MAGIC",
]
