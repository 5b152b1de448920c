"""SRS rewriting and reversal (roost.core.srs), as Mailu's ``sendermap``/``recipientmap``
(core/admin/mailu/internal/views/postfix.py) rewrite and reverse envelope addresses.

The vectors were produced by postsrsd 1.10 (Debian 12, libsrs2's algorithm) with the secret
``test-secret`` and the domain ``example.test`` at the Unix time :data:`NOW`, so Roost's
addresses are interchangeable with libsrs2's, postsrsd's and Mailu's (srslib).
"""

from __future__ import annotations

import pytest

from roost.core.srs import MAX_AGE_DAYS, SRS, srs_key

NOW = 1795802244
DAY = 86400
SRS_EXAMPLE = SRS(b"test-secret", "example.test")


def test_first_hop_rewrite_matches_postsrsd() -> None:
    assert (
        SRS_EXAMPLE.forward("alice@sender.test", NOW)
        == "SRS0=aIuv=JQ=sender.test=alice@example.test"
    )


def test_a_later_hop_rewrites_someone_elses_srs0_to_srs1_like_postsrsd() -> None:
    assert (
        SRS_EXAMPLE.forward("SRS0=abcd=XY=first.test=bob@hop.test", NOW)
        == "SRS1=sbIm=hop.test==abcd=XY=first.test=bob@example.test"
    )


def test_reverse_gives_the_original_sender() -> None:
    assert (
        SRS_EXAMPLE.reverse("SRS0=aIuv=JQ=sender.test=alice@example.test", NOW)
        == "alice@sender.test"
    )
    assert (
        SRS_EXAMPLE.reverse("SRS1=sbIm=hop.test==abcd=XY=first.test=bob@example.test", NOW)
        == "SRS0=abcd=XY=first.test=bob@hop.test"
    )


def test_reverse_ignores_letter_case_as_libsrs2_does() -> None:
    # Postfix may lower-case a lookup key; the hash and stamp still count.
    assert (
        SRS_EXAMPLE.reverse("srs0=aiuv=jq=sender.test=alice@example.test", NOW)
        == "alice@sender.test"
    )


def test_a_srs1_address_is_passed_on_to_the_first_hop_with_our_hash() -> None:
    third = SRS(b"another-secret", "third.test").forward(
        "SRS1=sbIm=hop.test==abcd=XY=first.test=bob@example.test", NOW
    )
    assert third is not None
    assert third.startswith("SRS1=")
    assert third.endswith("=hop.test==abcd=XY=first.test=bob@third.test")
    assert SRS(b"another-secret", "third.test").reverse(third, NOW) == (
        "SRS0=abcd=XY=first.test=bob@hop.test"
    )


@pytest.mark.parametrize(
    "forged",
    [
        "SRS0=AAAA=JQ=sender.test=alice@example.test",  # wrong hash
        "SRS0=aIuv=JQ=sender.test=mallory@example.test",  # another local part
        "SRS0=aIuv=JQ=evil.test=alice@example.test",  # another domain
        "SRS0=aIuv=JR=sender.test=alice@example.test",  # another stamp
        "SRS1=AAAA=hop.test==abcd=XY=first.test=bob@example.test",
        "SRS0=aIuv=JQ=sender.test@example.test",  # a field missing
        "alice@example.test",
        "no-at-sign",
    ],
)
def test_forged_or_broken_addresses_do_not_reverse(forged: str) -> None:
    assert SRS_EXAMPLE.reverse(forged, NOW) is None


def test_another_key_does_not_reverse() -> None:
    other = SRS(b"other-secret", "example.test")
    assert other.reverse("SRS0=aIuv=JQ=sender.test=alice@example.test", NOW) is None


def test_addresses_expire_after_max_age_days() -> None:
    address = SRS_EXAMPLE.forward("alice@sender.test", NOW)
    assert address is not None
    last_good = NOW + (MAX_AGE_DAYS - 1) * DAY
    assert SRS_EXAMPLE.reverse(address, last_good) == "alice@sender.test"
    assert SRS_EXAMPLE.reverse(address, NOW + MAX_AGE_DAYS * DAY) is None


def test_the_day_stamp_wraps_after_1024_days() -> None:
    made = 1023 * DAY  # day 1023, stamp "77"
    address = SRS_EXAMPLE.forward("alice@sender.test", made)
    assert address is not None and "=77=" in address
    assert SRS_EXAMPLE.reverse(address, made + 3 * DAY) == "alice@sender.test"  # day 2 again


@pytest.mark.parametrize("sender", ["no-at-sign", "@sender.test", "alice@", "alice@[192.0.2.1]"])
def test_senders_that_cannot_be_encoded_are_left_alone(sender: str) -> None:
    assert SRS_EXAMPLE.forward(sender, NOW) is None


def test_local_parts_with_separators_survive_the_round_trip() -> None:
    address = SRS_EXAMPLE.forward("a=b+c@sender.test", NOW)
    assert address is not None
    assert SRS_EXAMPLE.reverse(address, NOW) == "a=b+c@sender.test"


def test_key_is_derived_from_secret_key_like_mailus_srs_key() -> None:
    # HMAC-SHA256(hex(HMAC-SHA256(SECRET_KEY, "SECRET")), "SRS_KEY"): Mailu's socrate
    # set_env (core/base/libs/socrate/socrate/system.py), then core/admin/mailu/__init__.py.
    assert srs_key("changeMe").hex() == (
        "117711b3816dd27c6551da6f947cb01282f56493552ba655f1a275fbb8683024"
    )
    assert srs_key("changeMe") != srs_key("changeme")
