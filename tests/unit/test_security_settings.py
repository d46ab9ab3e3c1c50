"""Connection security settings: one set of AION_* settings for librdkafka (confluent-kafka) and
Faust's aiokafka, validated up front, and Kafka's refusals worded in one line. No broker needed
(tests/integration/test_secured_broker.py runs them against a SASL_SSL broker with ACLs)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from aion.client import KafkaAccessError, KafkaAuthenticationError, KafkaAuthorizationError, KafkaTLSError
from aion.common.access import AccessWatch, access_error, authorization_error, fetch_metadata
from aion.engine.settings import Settings, SettingsError
from aion.exceptions import AionError

SECRET = "pa55-w0rd-never-shown"
SCRAM = dict(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="svc",
             sasl_password=SECRET)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("missing", ["sasl_mechanism", "sasl_username", "sasl_password"])
def test_a_sasl_protocol_needs_mechanism_user_and_password(missing: str) -> None:
    values = {**SCRAM, missing: None}
    with pytest.raises(SettingsError) as info:
        Settings(**values)
    env = {"sasl_mechanism": "AION_SASL_MECHANISM", "sasl_username": "AION_SASL_USERNAME",
           "sasl_password": "AION_SASL_PASSWORD"}[missing]
    assert env in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize("name", ["sasl_mechanism", "sasl_username", "sasl_password"])
def test_sasl_settings_without_a_sasl_protocol_are_refused(name: str) -> None:
    with pytest.raises(SettingsError, match="AION_SECURITY_PROTOCOL") as info:
        Settings(**{name: {"sasl_mechanism": "PLAIN"}.get(name, SECRET)})
    assert SECRET not in str(info.value)


def test_mechanisms_both_clients_take() -> None:
    assert Settings(**{**SCRAM, "sasl_mechanism": "scram-sha-512"}).sasl_mechanism == "SCRAM-SHA-512"
    assert Settings(**{**SCRAM, "sasl_mechanism": "plain"}).sasl_mechanism == "PLAIN"
    with pytest.raises(SettingsError, match="GSSAPI.*not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"):
        Settings(**{**SCRAM, "sasl_mechanism": "GSSAPI"})


def test_a_ca_file_without_tls_is_refused() -> None:
    with pytest.raises(SettingsError, match="AION_SSL_CAFILE.*not SSL or SASL_SSL"):
        Settings(ssl_cafile="/etc/ca.pem")
    with pytest.raises(SettingsError):
        Settings(**{**SCRAM, "security_protocol": "SASL_PLAINTEXT"}, ssl_cafile="/etc/ca.pem")
    assert Settings(security_protocol="SSL", ssl_cafile="/etc/ca.pem").ssl_cafile == "/etc/ca.pem"


def test_the_password_is_never_shown() -> None:
    s = Settings(**SCRAM)
    assert SECRET not in repr(s) and SECRET not in str(s)
    with pytest.raises(SettingsError) as info:
        s.replace(partitions=0)
    assert SECRET not in str(info.value)


def test_connection_env_gives_a_child_process_the_same_connection() -> None:
    s = Settings(bootstrap_servers="b1:9094,b2:9094", ssl_cafile="/ca.pem", **SCRAM)
    env = s.connection_env()
    assert env == {"AION_BOOTSTRAP_SERVERS": "b1:9094,b2:9094", "AION_SECURITY_PROTOCOL": "SASL_SSL",
                   "AION_SASL_MECHANISM": "SCRAM-SHA-256", "AION_SASL_USERNAME": "svc",
                   "AION_SASL_PASSWORD": SECRET, "AION_SSL_CAFILE": "/ca.pem"}
    child = Settings.from_env(env)
    assert child.confluent_config() == s.confluent_config()
    assert Settings().connection_env() == {"AION_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}


# ------------------------------------------------------------------ the two clients' shapes


def test_confluent_and_faust_get_the_same_security() -> None:
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from aion.engine._app import _faust_credentials

    s = Settings(**SCRAM)
    assert {k: v for k, v in s.confluent_config().items() if k not in ("bootstrap.servers", "reconnect.backoff.ms")} == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "svc",
        "sasl.password": SECRET}
    auth = credentials_to_aiokafka_auth(_faust_credentials(s))
    assert (auth["security_protocol"], auth["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-256")
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("svc", SECRET)
    ctx = auth["ssl_context"]
    assert ctx.check_hostname and ctx.verify_mode.name == "CERT_REQUIRED"  # verified, like librdkafka
    assert SECRET not in repr(_faust_credentials(s))

    plain = credentials_to_aiokafka_auth(_faust_credentials(s.replace(security_protocol="SASL_PLAINTEXT")))
    assert plain["security_protocol"] == "SASL_PLAINTEXT" and plain["ssl_context"] is None
    tls = credentials_to_aiokafka_auth(_faust_credentials(Settings(security_protocol="SSL")))
    assert tls["security_protocol"] == "SSL" and tls["ssl_context"] is not None
    assert _faust_credentials(Settings()) is None


def test_faust_names_an_unreadable_ca_file() -> None:
    from aion.engine._app import _faust_credentials

    with pytest.raises(SettingsError, match=r"AION_SSL_CAFILE\) = '/no/such/ca.pem' cannot be read"):
        _faust_credentials(Settings(security_protocol="SSL", ssl_cafile="/no/such/ca.pem"))


# ------------------------------------------------------------------ Kafka's refusals, in one line


def _err(code: int, text: str) -> KafkaError:
    return KafkaError(code, text)


def test_refusals_are_aion_errors() -> None:
    for cls in (KafkaAuthenticationError, KafkaTLSError, KafkaAuthorizationError):
        assert issubclass(cls, KafkaAccessError) and issubclass(cls, AionError)
    assert issubclass(KafkaAuthorizationError, PermissionError)


def test_a_refused_login() -> None:
    s = Settings(bootstrap_servers="k:9094", **SCRAM)
    e = access_error(s, _err(KafkaError._AUTHENTICATION,
                             "sasl_ssl://k:9094/bootstrap: SASL authentication error: Authentication failed during "
                             "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256 (after "
                             "114ms in state AUTH_REQ)"))
    assert isinstance(e, KafkaAuthenticationError)
    assert str(e) == ("Kafka at k:9094 refused the login of user 'svc' (SCRAM-SHA-256 over SASL_SSL): invalid "
                      "credentials. Check AION_SASL_USERNAME, AION_SASL_PASSWORD and AION_SASL_MECHANISM (the "
                      "mechanism must be one the cluster enables)")


def test_an_untrusted_certificate_and_a_listener_without_tls() -> None:
    s = Settings(bootstrap_servers="k:9094", **SCRAM)
    e = access_error(s, _err(KafkaError._SSL,
                             "sasl_ssl://k:9094/bootstrap: SSL handshake failed: error:0A000086:SSL routines::"
                             "certificate verify failed: broker certificate could not be verified (after 7ms in "
                             "state SSL_HANDSHAKE)"))
    assert isinstance(e, KafkaTLSError)
    assert "certificate is not trusted" in str(e) and "AION_SSL_CAFILE" in str(e) and "system's CAs" in str(e)
    e = access_error(s, _err(KafkaError._TRANSPORT,
                             "sasl_ssl://k:9092/bootstrap: SSL handshake failed: Disconnected: SSL connection closed "
                             "by peer: connecting to a PLAINTEXT broker listener? (after 1ms in state SSL_HANDSHAKE)"))
    assert isinstance(e, KafkaTLSError) and "does not speak TLS" in str(e)
    # A plain transport failure (broker down) is no refusal.
    assert access_error(s, _err(KafkaError._TRANSPORT, "k:9094/bootstrap: Connection refused")) is None


def test_an_acl_refusal_names_who_what_and_the_prefix_acls() -> None:
    s = Settings(bootstrap_servers="k:9094", topic_prefix="shop", **SCRAM)
    e = authorization_error(s, KafkaError.TOPIC_AUTHORIZATION_FAILED, "describe", "other.events")
    assert str(e).startswith("Kafka at k:9094 refused: user 'svc' (SCRAM-SHA-256 over SASL_SSL) may not describe "
                             "topic 'other.events' (not authorized by the cluster's ACLs).")
    assert "prefixed 'shop.' and 'shop-'" in str(e)
    e = authorization_error(s, _err(KafkaError.GROUP_AUTHORIZATION_FAILED, "x"), "join", "billing")
    assert "may not join consumer group 'billing'" in str(e)
    assert isinstance(access_error(s, _err(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "x")),
                      KafkaAuthorizationError)


class _RefusingClient:
    """list_topics times out; the error callback hears of a refused login on the first poll."""

    def __init__(self, watch: AccessWatch, err: KafkaError | None) -> None:
        self.watch, self.err, self.calls = watch, err, 0

    def list_topics(self, topic=None, timeout=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        time.sleep(min(timeout, 0.05))
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Local: Broker transport failure"))

    def poll(self, timeout=None):  # type: ignore[no-untyped-def]
        if self.err is not None:
            self.watch(self.err)


def test_fetch_metadata_stops_at_the_first_refusal() -> None:
    s = Settings(**SCRAM)
    watch = AccessWatch(s)
    client = _RefusingClient(watch, _err(KafkaError._AUTHENTICATION, "h:1/bootstrap: SASL authentication error"))
    with pytest.raises(KafkaAuthenticationError):
        fetch_metadata(client, watch, timeout=30)
    assert client.calls == 1

    # Without a refusal the transport failure comes after the timeout, as before.
    watch = AccessWatch(s)
    client = _RefusingClient(watch, None)
    started = time.monotonic()
    with pytest.raises(KafkaException):
        fetch_metadata(client, watch, timeout=0.3, slice_s=0.05)
    assert 0.25 <= time.monotonic() - started < 2 and client.calls >= 3
