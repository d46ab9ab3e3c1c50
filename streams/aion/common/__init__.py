"""The plumbing every part of Aion Streams may import: clients, engine workers, activity
workers, the test environment, the CLI and the benchmarks.

- :mod:`aion.common.settings`: ``Settings.from_env()``, every ``AION_*`` variable in one place,
  and the confluent-kafka configuration they make (``settings.confluent_config()``);
- :mod:`aion.common.topics`: the deployment's topic names (changelogs included), idempotent
  creation and validation;
- :mod:`aion.common.access`: what a refused login, TLS trust or ACL looks like, and metadata
  reads that say so;
- :mod:`aion.common.kafka`: the asyncio adapters around confluent-kafka's producer and consumer;
- :mod:`aion.common.schedule_spec`: schedule specs, their fire times and ids.

Nothing here imports Faust, the engine, the client or the runtime (``tests/unit/
test_import_graph.py`` and ``test_no_faust_import.py`` say so). ``aion.engine.settings`` and
``aion.engine.topics``, the older homes of the first two, still re-export them.
"""
