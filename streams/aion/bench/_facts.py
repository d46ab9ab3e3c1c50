"""Machine facts printed with every benchmark: figures mean little without them."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

from ..common.settings import Settings
from ._procs import broker_is_local, broker_pid, broker_version


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _memory_mb() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _first(v: Any) -> Any:
    return v[0] if isinstance(v, tuple) else v


def machine_facts(settings: Settings) -> dict[str, Any]:
    import confluent_kafka

    pid = broker_pid(settings.bootstrap_servers)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count()
    return {
        "cores": cores,
        "cpu": _cpu_model(),
        "memory_mb": _memory_mb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "faust": _version("faust-streaming"),
        "aiokafka": _version("aiokafka"),
        "confluent_kafka": _first(confluent_kafka.version()),
        "librdkafka": _first(confluent_kafka.libversion()),
        "fastavro": _version("fastavro"),
        "aion": _version("aion-streams"),
        "kafka_broker": broker_version(pid),
        "bootstrap": settings.bootstrap_servers,
        "broker_on_this_machine": broker_is_local(settings.bootstrap_servers),
        "broker_pid": pid,
        "partitions": settings.partitions,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
