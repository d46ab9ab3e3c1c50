"""Before a command talks to Kafka: does the cluster answer? One line if not.

Without this check a command against a stopped broker waited ~10 s while librdkafka printed
hundreds of ``Connection refused`` lines, and ended in a raw ``KafkaException``. Here: a TCP
connect to each bootstrap address (a refused or unresolvable address is known at once), then one
metadata request, with librdkafka's own log routed through Python logging (``aion.kafka``).
"""

from __future__ import annotations

import logging
import os
import socket
import time

import click

from ..common.access import AccessWatch, KafkaAccessError, fetch_metadata
from ..common.settings import Settings
from ._errors import AccessDenied, BrokerUnreachable

#: librdkafka's log lines go here (``logger`` in every confluent-kafka config the CLI makes).
KAFKA_LOG = logging.getLogger("aion.kafka")

#: Seconds the metadata request may take when every address accepts TCP connections.
CONNECT_TIMEOUT_ENV = "AION_CONNECT_TIMEOUT"
DEFAULT_CONNECT_TIMEOUT = 10.0


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for part in bootstrap.split(","):
        part = part.strip()
        if "://" in part:
            part = part.split("://", 1)[1]
        host, sep, port = part.rpartition(":")
        if not sep or not port.isdigit():
            continue
        out.append((host.strip("[]"), int(port)))
    return out


def _tcp_problem(host: str, port: int, timeout: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return f"cannot resolve {host!r} ({exc.strerror or exc})"
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port}"
    except OSError as exc:
        return f"cannot connect to {host}:{port} ({exc.strerror or exc})"


def describe_source(settings: Settings, origin: str | None) -> str:
    return f"{settings.bootstrap_servers}" + (f" (from {origin})" if origin else "")


def check_broker(settings: Settings, origin: str | None = None, timeout: float | None = None,
                 wait: float = 0.0) -> None:
    """Raise :class:`BrokerUnreachable` (one line: the address, why, what to check) unless the
    cluster at ``settings.bootstrap_servers`` answers a metadata request.

    ``wait``: seconds to keep trying while no address accepts a connection (long-running
    workers, whose supervisor may start them a moment before the broker); commands use 0.
    """
    from confluent_kafka.admin import AdminClient

    if timeout is None:
        timeout = float(os.environ.get(CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT))
    where = describe_source(settings, origin)
    hint = ("Is the broker running (docker/kafka-local/kafka-local status)? Point aion at it with "
            "--bootstrap or AION_BOOTSTRAP_SERVERS=host:port.")
    addresses = _addresses(settings.bootstrap_servers)
    give_up = time.monotonic() + wait
    said = False
    while True:
        problems = [p for p in (_tcp_problem(h, port, min(timeout, 3.0)) for h, port in addresses) if p]
        if not addresses or len(problems) < len(addresses):
            break
        if time.monotonic() >= give_up:
            waited = f" (waited {wait:g} s)" if wait else ""
            raise BrokerUnreachable(f"Kafka broker unreachable at {where}{waited}: {'; '.join(problems)}. {hint}")
        if not said:
            click.echo(f"aion: waiting up to {wait:g} s for the Kafka broker at {where}: {'; '.join(problems)}",
                       err=True)
            said = True
        time.sleep(0.5)
    watch = AccessWatch(settings)
    admin = AdminClient({**settings.confluent_config(), "logger": KAFKA_LOG, "error_cb": watch,
                         "client.id": f"{settings.topic_prefix}.cli-check"})
    started = time.monotonic()
    try:
        # A refused login or TLS handshake fails here within ~0.5 s, not after the timeout.
        md = fetch_metadata(admin, watch, timeout)
    except KafkaAccessError as exc:
        raise AccessDenied(str(exc)) from None
    except Exception as exc:  # KafkaException: transport failure, timeout
        err = exc.args[0] if exc.args else None
        why = err.str() if hasattr(err, "str") else str(exc)
        if not settings.security_protocol or settings.security_protocol == "PLAINTEXT":
            # A TLS or SASL listener closes a plaintext connection without a word.
            hint += (" If the cluster requires TLS or SASL, set AION_SECURITY_PROTOCOL (SSL, SASL_SSL, ...) "
                     "and the AION_SASL_* / AION_SSL_CAFILE settings.")
        raise BrokerUnreachable(
            f"Kafka broker at {where} did not answer a metadata request within {timeout:g} s ({why}). {hint}"
        ) from None
    finally:
        admin.poll(0)  # hand librdkafka's queued log lines to KAFKA_LOG
    if not md.brokers:
        raise BrokerUnreachable(f"the Kafka cluster at {where} lists no brokers "
                                f"(after {time.monotonic() - started:.1f} s). {hint}")
