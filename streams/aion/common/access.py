"""Kafka refusing a process, said in one line: wrong credentials, an untrusted broker
certificate, or an ACL that does not allow the operation.

librdkafka reports a failed SASL login or TLS handshake only through its error callback and
its log, and keeps retrying: a metadata request then fails after its whole timeout with
"Broker transport failure", which reads like a stopped broker. :class:`AccessWatch` is that
callback; :func:`fetch_metadata` asks in short slices and stops at the first such error with
the exception below. An ACL refusal comes back as an error code of the request
(``TOPIC_AUTHORIZATION_FAILED``, ...): :func:`authorization_error` words it.

No message carries a password (``Settings`` does not show it, librdkafka does not log it).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from ..exceptions import AionError
from .settings import Settings

__all__ = [
    "KafkaAccessError", "KafkaAuthenticationError", "KafkaTLSError", "KafkaAuthorizationError",
    "AccessWatch", "fetch_metadata", "authorization_error", "AUTHORIZATION_CODES", "BROKER_LOST_CODES", "KAFKA_LOG",
]

#: librdkafka's own log lines of the clients that probe the cluster (``logger`` of their config).
#: A library does not print them by itself (NullHandler); an application's logging shows them.
KAFKA_LOG = logging.getLogger("aion.kafka")
KAFKA_LOG.addHandler(logging.NullHandler())


class KafkaAccessError(AionError):
    """Kafka refused this process: see the subclasses. The message names the setting to check."""


class KafkaAuthenticationError(KafkaAccessError):
    """The SASL login failed: wrong user name or password, or a mechanism the cluster does not
    enable (``AION_SASL_USERNAME``, ``AION_SASL_PASSWORD``, ``AION_SASL_MECHANISM``)."""


class KafkaTLSError(KafkaAccessError):
    """The TLS handshake failed: the broker's certificate is not trusted (``AION_SSL_CAFILE``)
    or does not name the address connected to."""


class KafkaAuthorizationError(KafkaAccessError, PermissionError):
    """An ACL does not allow the operation (on a topic, consumer group or transactional id).

    Also a builtin :class:`PermissionError`."""


#: The error codes of an ACL refusal, and what they refuse.
AUTHORIZATION_CODES: dict[int, str] = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "consumer group",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional id",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
}

#: librdkafka's codes for a broker it cannot reach (down, its name unresolvable, the connection lost).
BROKER_LOST_CODES = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE})

#: librdkafka's codes for a failed login and a failed TLS handshake.
_AUTHENTICATION = KafkaError._AUTHENTICATION
_SSL = KafkaError._SSL


def _who(settings: Settings) -> str:
    user = f"user {settings.sasl_username!r}" if settings.sasl_username else "this client"
    how = settings.sasl_mechanism or "SASL"
    return f"{user} ({how} over {settings.security_protocol or 'PLAINTEXT'})"


def _reason(err: KafkaError) -> str:
    """librdkafka's text without its ``sasl_ssl://host:port/bootstrap:`` prefix and timing tail."""
    text = err.str()
    head, sep, rest = text.partition("/bootstrap: ")
    if not sep:
        head, sep, rest = text.partition(": ")
        rest = rest if sep and "://" in head else text
    cut = rest.find(" (after ")
    return (rest[:cut] if cut > 0 else rest).strip()


def access_error(settings: Settings, err: KafkaError) -> KafkaAccessError | None:
    """The exception a login or TLS failure of a client with ``settings`` stands for, else None."""
    code = err.code()
    where = f"Kafka at {settings.bootstrap_servers}"
    if code == _AUTHENTICATION:
        reason = _reason(err)
        if "invalid credentials" in reason:
            reason = "invalid credentials"
        return KafkaAuthenticationError(
            f"{where} refused the login of {_who(settings)}: {reason[:200]}. Check AION_SASL_USERNAME, "
            f"AION_SASL_PASSWORD and AION_SASL_MECHANISM (the mechanism must be one the cluster enables)")
    if code == _SSL:
        reason = _reason(err)
        if "certificate verify failed" in reason:
            return KafkaTLSError(
                f"TLS handshake with {where} failed: the broker's certificate is not trusted (certificate verify "
                f"failed). Set AION_SSL_CAFILE to the CA (PEM) that signed it"
                + (f" (now {settings.ssl_cafile!r})" if settings.ssl_cafile else " (now unset: the system's CAs)"))
        return KafkaTLSError(f"TLS handshake with {where} failed ({reason[:200]}): check AION_SECURITY_PROTOCOL "
                             "(does this listener speak TLS?) and AION_SSL_CAFILE")
    if code == KafkaError._TRANSPORT and "SSL handshake failed" in err.str():
        return KafkaTLSError(
            f"TLS handshake with {where} failed: the listener closed the connection ({_reason(err)[:160]}). It "
            f"does not speak TLS: check AION_SECURITY_PROTOCOL ({settings.security_protocol}) and the port")
    if code in AUTHORIZATION_CODES:
        return authorization_error(settings, code)
    return None


def authorization_error(settings: Settings, code: int | KafkaError, what: str = "",
                        resource: str | None = None) -> KafkaAuthorizationError:
    """One line for an ACL refusal: who was refused what, and which ACLs a prefix needs.

    ``what``: the operation, a verb (``"create"``, ``"read"``, ``"write to"``...); ``resource``:
    the name of the topic, group or transactional id."""
    if isinstance(code, KafkaError):
        code = code.code()
    kind = AUTHORIZATION_CODES.get(code, "resource")
    target = f"{kind} {resource!r}" if resource else f"this {kind}"
    p = settings.topic_prefix
    return KafkaAuthorizationError(
        f"Kafka at {settings.bootstrap_servers} refused: {_who(settings)} may not {what or 'use'} {target} "
        f"(not authorized by the cluster's ACLs). A deployment with topic prefix {p!r} needs ACLs on the "
        f"topics, consumer groups and transactional ids prefixed '{p}.' and '{p}-' (README: Running against "
        f"a secured Kafka)")


class AccessWatch:
    """A librdkafka ``error_cb`` that keeps the first login, TLS or ACL failure it hears of.

    ``{**settings.confluent_config(), "error_cb": watch}``; then :meth:`raise_if_refused`
    (after the client's ``poll``, which serves the callback)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.error: KafkaAccessError | None = None

    def __call__(self, err: KafkaError) -> None:
        if self.error is None:
            self.error = access_error(self.settings, err)

    def raise_if_refused(self) -> None:
        if self.error is not None:
            raise self.error


def fetch_metadata(client: Any, watch: AccessWatch, timeout: float, topic: str | None = None,
                   *, slice_s: float = 0.5) -> Any:
    """``client.list_topics(topic)`` that fails within about half a second of a refused login
    or TLS handshake (:class:`KafkaAccessError`) instead of after ``timeout`` with "transport
    failure". ``client`` (Producer, Consumer or AdminClient) must have ``watch`` as its
    ``error_cb``. Other failures raise ``KafkaException`` after ``timeout``, as before."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            return client.list_topics(topic, timeout=max(0.05, min(slice_s, remaining)))
        except KafkaException:
            _serve_callbacks(client)
            watch.raise_if_refused()
            if time.monotonic() + 0.001 >= deadline:
                raise


def _serve_callbacks(client: Any) -> None:
    """Run the client's queued callbacks (``error_cb``, ``logger``) without reading records."""
    try:
        if hasattr(client, "consume"):  # a Consumer: poll() would return records of an assignment
            if not client.assignment():
                client.poll(0)
        else:
            client.poll(0)
    except (KafkaException, RuntimeError):
        pass
