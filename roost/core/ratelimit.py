"""Pure helpers for authentication and message rate limiting (Mailu's AUTH_RATELIMIT_*
and MESSAGE_RATELIMIT settings).

The gate keeps the moving-window counters (in Redis, like Mailu's ``limits`` storage); this
module only decides what is counted and under which key: the rate a setting names, the
client network an address belongs to, whether an address is exempt, and the short password
fingerprint that both deduplicates repeated guesses and names them in the ``badauth`` log
line fail2ban reads.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from roost.core.ipnet import ip_in_networks, parse_ip

__all__ = ["Rate", "RateError", "client_network", "is_exempt", "parse_rate", "password_fingerprint"]


class RateError(ValueError):
    """A rate string that does not follow the ``limits`` notation."""


@dataclass(frozen=True, slots=True)
class Rate:
    """``amount`` hits allowed per moving window of ``seconds``."""

    amount: int
    seconds: int


# Granularities of the ``limits`` library, which Mailu's settings are written for: a month
# is 30 days and a year is 12 such months (360 days), not a calendar year.
_PERIODS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "month": 30 * 86400,
    "year": 12 * 30 * 86400,
}
# ``limits`` notation: "5/hour", "5 per hour", "10/2 minutes", "10 per 2 minutes".
_RATE = re.compile(
    r"\s*(\d+)\s*(?:/|\s+per\s+|per)\s*(\d+)?\s*(second|minute|hour|day|month|year)s?\s*",
    re.IGNORECASE,
)


def parse_rate(text: str) -> Rate:
    """Parse a ``limits`` rate such as ``5/hour`` or ``50 per 2 days``; raise RateError."""
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise RateError(f"{text!r} is not a rate such as 5/hour, 50/day or 10 per 2 minutes")
    amount, multiple, unit = match.groups()
    count = int(multiple) if multiple else 1
    if count < 1:
        raise RateError(f"{text!r}: the period must be at least 1 {unit.lower()}")
    return Rate(int(amount), count * _PERIODS[unit.lower()])


@functools.lru_cache(maxsize=4096)  # each login asks twice; clients reconnect all day
def client_network(ip: str, v4_mask: int, v6_mask: int) -> str:
    """The network a client address is counted under, e.g. ``192.0.2.0/24``.

    Mailu masks to AUTH_RATELIMIT_IP_V4_MASK / _V6_MASK bits (24 and 48 by default) so one
    attacker cannot dodge the budget by hopping within a subnet. IPv4-mapped IPv6 counts as
    the IPv4 address. Loopback is masked like any other network: it is where tests play the
    outside world. Raises ValueError for text that is not an IP address.
    """
    addr = parse_ip(ip)
    if addr is None:
        raise ValueError(f"{ip!r} is not an IP address")
    mask = v4_mask if addr.version == 4 else v6_mask
    if not 0 <= mask <= addr.max_prefixlen:
        raise ValueError(f"prefix length {mask} is out of range for IPv{addr.version}")
    return str(ipaddress.ip_network(f"{addr}/{mask}", strict=False))


def is_exempt(ip: str, exemption_networks: Iterable[str]) -> bool:
    """True when ``ip`` lies in AUTH_RATELIMIT_EXEMPTION (a list of CIDRs); False for junk."""
    return ip_in_networks(ip, exemption_networks)


def password_fingerprint(secret_key: bytes, password: str) -> str:
    """First 6 hex digits of HMAC-SHA256(secret_key, password), as in Mailu's log lines.

    Lets the per-user limiter count a repeated wrong password once and lets the log show
    that two guesses were the same, without writing the password anywhere. 24 bits are too
    few to help anyone recover the password even from a leaked log.
    """
    data = password.encode("utf-8", "surrogatepass") if isinstance(password, str) else b""
    return hmac.new(secret_key, data, hashlib.sha256).hexdigest()[:6]
