"""Client IP parsing shared by app-token IP restrictions and auth rate limiting.

The gate receives client addresses from nginx headers, Dovecot and Postfix in several
spellings ("[2001:db8::1]", "::ffff:192.0.2.1", "fe80::1%eth0"); both the token check
(an app token may be limited to networks, Mailu core/admin/mailu/models.py ``Token``) and the
rate limiter (Mailu core/admin/mailu/limiter.py) must read them the same way, so the
parsing lives here once. Pure functions; garbage yields ``None``/``False``, never an exception.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

__all__ = ["IPAddress", "IPNetwork", "ip_in_networks", "parse_ip", "parse_networks"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8192)
def parse_ip(text: str) -> IPAddress | None:
    """Parse a client address, or return ``None`` when it is not one.

    Brackets and an IPv6 zone index are dropped, and an IPv4-mapped IPv6 address
    (``::ffff:192.0.2.1``, what a dual-stack socket reports for an IPv4 peer) becomes the
    IPv4 address, so the same client is keyed and matched the same way on either stack.
    """
    if not isinstance(text, str):
        return None
    value = text.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    value = value.partition("%")[0]
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@lru_cache(maxsize=1024)
def _parse_networks(items: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    nets: list[IPNetwork] = []
    for item in items:
        text = item.strip()
        if not text:
            continue
        try:
            nets.append(ipaddress.ip_network(text.strip("[]"), strict=False))
        except ValueError:
            # A malformed entry must not widen access; skipping it can only narrow it.
            continue
    return tuple(nets)


def parse_networks(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDR strings (host bits allowed), silently dropping malformed entries."""
    return _parse_networks(tuple(items))


def ip_in_networks(ip: str, networks: Iterable[str]) -> bool:
    """True when ``ip`` parses and lies inside one of ``networks``."""
    addr = parse_ip(ip)
    if addr is None:
        return False
    return any(addr.version == net.version and addr in net for net in parse_networks(networks))
