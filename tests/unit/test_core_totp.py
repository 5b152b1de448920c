"""TOTP codes, recovery codes and the sealing of the secret (roost.core.totp), fixed clock."""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, urlparse

import pytest

from roost.core import totp

# RFC 6238 appendix B: the SHA-1 test secret "12345678901234567890" and its 8-digit codes;
# the 6-digit code is the last six digits of each.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode("ascii")
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
]
KEYS = totp.TotpKeys.from_secret_key("a-test-secret-key-of-some-length")


@pytest.mark.parametrize(("now", "code"), RFC_VECTORS)
def test_codes_are_rfc_6238(now: int, code: str) -> None:
    step = totp.matching_step(RFC_SECRET, code[-6:], now, None)
    assert step == now // 30


def test_a_code_counts_one_step_either_side_and_no_further() -> None:
    now = 1111111111
    code = "050471"  # the step of 1111111111
    assert totp.matching_step(RFC_SECRET, code, now + 30, None) == now // 30
    assert totp.matching_step(RFC_SECRET, code, now - 30, None) == now // 30
    assert totp.matching_step(RFC_SECRET, code, now + 60, None) is None
    assert totp.matching_step(RFC_SECRET, code, now - 60, None) is None


def test_a_used_step_and_earlier_ones_are_refused() -> None:
    now = 1111111111
    step = now // 30
    assert totp.matching_step(RFC_SECRET, "050471", now, step) is None  # replayed
    assert totp.matching_step(RFC_SECRET, "050471", now, step - 1) == step
    # 1111111109 lies in the step before: its code is inside the window, but once a
    # later step has been used it is refused too.
    assert step - 1 == 1111111109 // 30
    assert totp.matching_step(RFC_SECRET, "081804", now, None) == step - 1
    assert totp.matching_step(RFC_SECRET, "081804", now, step) is None


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "٠٥٠٤٧١", None])
def test_malformed_codes_are_refused(typed: object) -> None:
    assert totp.matching_step(RFC_SECRET, typed, 1111111111, None) is None  # type: ignore[arg-type]


def test_spaces_in_a_typed_code_are_ignored() -> None:
    assert totp.matching_step(RFC_SECRET, " 050 471 ", 1111111111, None) == 1111111111 // 30


def test_a_damaged_secret_never_matches() -> None:
    assert totp.matching_step("not base32!", "050471", 1111111111, None) is None


def test_new_secrets_are_160_bits_of_base32() -> None:
    secret = totp.new_secret()
    assert len(base64.b32decode(secret)) == 20
    assert secret != totp.new_secret()


def test_the_uri_is_what_authenticator_apps_scan() -> None:
    uri = totp.provisioning_uri(RFC_SECRET, "joé@example.com", "Roost Mail")
    parsed = urlparse(uri)
    assert (parsed.scheme, parsed.netloc) == ("otpauth", "totp")
    query = parse_qs(parsed.query)
    assert query["secret"] == [RFC_SECRET]
    assert query["issuer"] == ["Roost Mail"]
    svg = totp.qr_svg(uri)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")


def test_the_sealed_secret_does_not_show_the_secret_and_opens_only_for_its_account() -> None:
    secret = totp.new_secret()
    sealed = KEYS.seal(secret, "joe@example.com")
    assert secret not in sealed and secret.lower() not in sealed.lower()
    assert sealed != KEYS.seal(secret, "joe@example.com")  # a fresh nonce each time
    assert KEYS.unseal(sealed, "joe@example.com") == secret
    with pytest.raises(totp.SealError):
        KEYS.unseal(sealed, "ann@example.com")
    other = totp.TotpKeys.from_secret_key("another-secret-key-entirely")
    with pytest.raises(totp.SealError):
        other.unseal(sealed, "joe@example.com")
    with pytest.raises(totp.SealError):
        KEYS.unseal(sealed[:-4] + "AAAA", "joe@example.com")
    with pytest.raises(totp.SealError):
        KEYS.unseal(secret, "joe@example.com")


def test_recovery_codes_are_80_bits_and_stored_as_keyed_hashes() -> None:
    codes = totp.new_recovery_codes()
    assert len(codes) == totp.RECOVERY_CODES == len(set(codes))
    assert all(re.fullmatch(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}", c) for c in codes)
    stored = [KEYS.recovery_hash(c) for c in codes]
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in stored)
    assert not any(c.replace("-", "") in h for c in codes for h in stored)
    # As typed: upper case, without dashes, with spaces.
    typed = codes[3].upper().replace("-", " ")
    assert KEYS.find_recovery(stored, typed) == stored[3]
    assert KEYS.find_recovery(stored, "aaaa-aaaa-aaaa-aaaa") is None
    assert KEYS.find_recovery(stored, "") is None
    other = totp.TotpKeys.from_secret_key("another-secret-key-entirely")
    assert other.find_recovery(stored, codes[3]) is None
