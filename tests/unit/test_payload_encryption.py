"""Payload encryption (``aion/encryption.py``): AES-256-GCM payloads, key rotation, clear errors."""

from __future__ import annotations

import base64

import pytest

from aion import converter as conv_mod
from aion.converter import DataConverter, PayloadConversionError
from aion.encryption import ENCRYPTED, EncryptingConverter, EncryptionKeyError, keys_from_env, new_key
from aion.model import Payload

K1, K2 = new_key(), new_key()


def conv(text: str) -> EncryptingConverter:
    keys = keys_from_env({"AION_PAYLOAD_KEYS": text})
    assert keys is not None
    return EncryptingConverter(keys)


def test_a_value_goes_out_as_ciphertext_and_comes_back() -> None:
    c = conv(f"k1:{K1}")
    p = c.to_payload({"card": "4111-1111", "cents": 250})
    assert p.content_type == f"{ENCRYPTED};key=k1" and b"4111" not in p.data
    assert c.from_payload(p) == {"card": "4111-1111", "cents": 250}
    assert c.to_payload("same") != c.to_payload("same")  # a fresh nonce each time
    assert c.from_payload(c.to_payload(b"\x00raw")) == b"\x00raw"  # binary payloads too


def test_rotation_new_payloads_take_the_first_key_old_ones_still_decrypt() -> None:
    old = conv(f"k1:{K1}").to_payload("from last year")
    rotated = conv(f"k2:{K2},k1:{K1}")
    assert rotated.to_payload("x").content_type.endswith("key=k2")
    assert rotated.from_payload(old) == "from last year"
    with pytest.raises(PayloadConversionError, match="key 'k1', which this process does not have: add it"):
        conv(f"k2:{K2}").from_payload(old)


def test_an_altered_payload_or_another_key_under_the_same_id_is_refused() -> None:
    c = conv(f"k1:{K1}")
    p = c.to_payload("amount: 10")
    flipped = Payload(p.content_type, p.data[:-1] + bytes([p.data[-1] ^ 1]))
    with pytest.raises(PayloadConversionError, match="does not decrypt: it was altered"):
        c.from_payload(flipped)
    with pytest.raises(PayloadConversionError, match="does not decrypt"):
        conv(f"k1:{K2}").from_payload(p)


def test_a_plain_payload_still_reads_and_a_plain_converter_names_the_problem() -> None:
    assert conv(f"k1:{K1}").from_payload(DataConverter().to_payload([1, 2])) == [1, 2]  # written before encryption
    with pytest.raises(PayloadConversionError, match="binary/encrypted"):
        DataConverter().from_payload(conv(f"k1:{K1}").to_payload(1))


@pytest.mark.parametrize("setting, message", [
    ("k1", "is not KEY_ID:BASE64_KEY"),
    ("k1:not base64!", "the key of 'k1' is not base64"),
    (f"k1:{base64.b64encode(b'short').decode()}", "has 5 bytes; AES-256 needs 32"),
])
def test_bad_key_settings_say_what_to_fix(setting: str, message: str) -> None:
    with pytest.raises(EncryptionKeyError, match=message):
        keys_from_env({"AION_PAYLOAD_KEYS": setting})


def test_the_default_converter_encrypts_when_keys_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AION_PAYLOAD_KEYS", f"k9:{K1}")
    monkeypatch.setattr(conv_mod, "_default", None)
    assert isinstance(conv_mod.default_converter(), EncryptingConverter)
    monkeypatch.delenv("AION_PAYLOAD_KEYS")
    monkeypatch.setattr(conv_mod, "_default", None)
    assert type(conv_mod.default_converter()) is DataConverter
