"""Rate-limit helpers (roost.core.ratelimit)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from roost.core.ratelimit import (
    Rate,
    RateError,
    client_network,
    is_exempt,
    parse_rate,
    password_fingerprint,
)

DAY = 86400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5/hour", Rate(5, 3600)),
        ("50/day", Rate(50, DAY)),
        ("200/day", Rate(200, DAY)),
        ("10/minute", Rate(10, 60)),
        ("1/second", Rate(1, 1)),
        ("5 per hour", Rate(5, 3600)),
        ("5per hour", Rate(5, 3600)),
        ("10/2 minutes", Rate(10, 120)),
        ("10 per 2 minutes", Rate(10, 120)),
        ("10/2minutes", Rate(10, 120)),
        ("3/Hours", Rate(3, 3600)),
        (" 7 / day ", Rate(7, DAY)),
        ("100/month", Rate(100, 30 * DAY)),
        ("1000/year", Rate(1000, 360 * DAY)),  # limits: a year is 12 x 30 days
        ("0/hour", Rate(0, 3600)),
    ],
)
def test_parse_rate(text: str, expected: Rate) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "5", "hour", "5/fortnight", "5/0 hours", "-5/hour", "5/hour;10/day", "five/hour", None],
)
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(RateError):
        parse_rate(text)


def test_rate_error_is_value_error() -> None:
    assert issubclass(RateError, ValueError)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("192.0.2.77", "192.0.2.0/24"),
        ("192.0.2.0", "192.0.2.0/24"),
        ("::ffff:192.0.2.77", "192.0.2.0/24"),
        ("[::ffff:192.0.2.77]", "192.0.2.0/24"),
        ("2001:db8:1:2:3::4", "2001:db8:1::/48"),
        ("[2001:db8:1:2::4]", "2001:db8:1::/48"),
        ("fe80::1%eth0", "fe80::/48"),
        ("127.0.0.2", "127.0.0.0/24"),
        ("::1", "::/48"),
        ("::ffff:127.0.0.3", "127.0.0.0/24"),
    ],
)
def test_client_network(ip: str, expected: str) -> None:
    assert client_network(ip, 24, 48) == expected


def test_client_network_masks() -> None:
    assert client_network("192.0.2.77", 32, 128) == "192.0.2.77/32"
    assert client_network("192.0.2.77", 16, 48) == "192.0.0.0/16"
    assert client_network("192.0.2.77", 0, 0) == "0.0.0.0/0"
    assert client_network("2001:db8::1", 24, 64) == "2001:db8::/64"


@pytest.mark.parametrize("ip", ["", "garbage", "192.0.2", "300.1.1.1", None])
def test_client_network_rejects_junk(ip: str) -> None:
    with pytest.raises(ValueError):
        client_network(ip, 24, 48)


def test_client_network_rejects_bad_mask() -> None:
    with pytest.raises(ValueError):
        client_network("192.0.2.1", 33, 48)


def test_is_exempt() -> None:
    networks = ("192.0.2.0/24", "2001:db8::/32", "198.51.100.7")
    assert is_exempt("192.0.2.5", networks)
    assert is_exempt("::ffff:192.0.2.5", networks)
    assert is_exempt("2001:db8::9", networks)
    assert is_exempt("198.51.100.7", networks)
    assert not is_exempt("198.51.100.8", networks)
    assert not is_exempt("203.0.113.1", networks)
    assert not is_exempt("garbage", networks)
    assert not is_exempt("192.0.2.5", ())


def test_password_fingerprint() -> None:
    key = b"secret-key"
    fingerprint = password_fingerprint(key, "hunter2")
    assert len(fingerprint) == 6
    assert all(ch in "0123456789abcdef" for ch in fingerprint)
    assert fingerprint == hmac.new(key, b"hunter2", hashlib.sha256).hexdigest()[:6]
    assert password_fingerprint(key, "hunter2") == fingerprint  # stable: dedup works
    assert password_fingerprint(b"other-key", "hunter2") != fingerprint
    assert password_fingerprint(key, "hunter3") != fingerprint
    assert len(password_fingerprint(key, "\udcff")) == 6
    assert len(password_fingerprint(key, "")) == 6
