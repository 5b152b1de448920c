"""Postfix transport for a relayed domain, from the relay's ``smtp`` field (Mailu's relay target).

Mailu lets an administrator relay a domain to another MTA. The target field is written as
``[mx:|lmtp:]host[:port]`` or ``[mx:|lmtp:][ipv6-or-host]:port`` and becomes a Postfix
transport(5) ``transport:nexthop`` value. A bare host is bracketed so Postfix connects to its
A/AAAA record without an MX lookup; ``mx:`` asks for the MX lookup; ``lmtp:`` delivers over
LMTP. Pure logic; the gate precomputes the answer for every relay when it builds its index.
"""

from __future__ import annotations

import ipaddress
import re

from roost.core.address import DOMAIN_MAX, AddressError, domain_to_ascii

__all__ = ["TransportError", "relay_transport"]


class TransportError(ValueError):
    """A relay target that cannot be turned into a Postfix transport; the message says why."""


# Host names in relay targets are often internal names such as a container's "smtp_relay";
# Postfix accepts underscores in host names (valid_hostname()), so ASCII names may use them.
_HOST_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_ASCII_HOST = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")


def _port(relay: str, spec: str, text: str) -> str:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 65536:
        raise TransportError(
            f"relay {relay!r}: target {spec!r}: port {text!r} is not a number from 1 to 65535"
        )
    return str(int(text))


def _host(relay: str, spec: str, host: str) -> str:
    """IDNA-encode a host name (Mailu encodes relay hosts with IDNA too)."""
    if (
        len(host) <= DOMAIN_MAX
        and _ASCII_HOST.fullmatch(host)
        and all(label[2:4] != "--" for label in host.split("."))
    ):
        return host
    try:
        return domain_to_ascii(host, max_length=DOMAIN_MAX)
    except AddressError as exc:
        raise TransportError(f"relay {relay!r}: target {spec!r}: {exc}") from None


def relay_transport(domain: str, smtp: str | None) -> str:
    """Return the Postfix transport for relayed ``domain`` whose target field is ``smtp``.

    ``domain`` is the relay's stored (punycode) name. Mapping, as Mailu's ``/postfix/transport``:

    ================================  =======================================
    ``smtp``                          result
    ================================  =======================================
    empty or ``None``                 ``smtp:<domain>`` (MX lookup of the domain)
    ``:port``                         ``smtp:<domain>:port``
    ``host`` / ``host:port``          ``smtp:[host]`` / ``smtp:[host]:port``
    ``mx:host`` / ``mx:host:port``    ``smtp:host`` / ``smtp:host:port``
    ``lmtp:host`` / ``lmtp:host:port``  ``lmtp:host`` / ``lmtp:host:port``
    ``[2001:db8::1]`` / ``...:port``  ``smtp:[ipv6:2001:db8::1]`` / ``...:port``
    ================================  =======================================

    ``None`` is treated like an empty field: Mailu fails the lookup there (it formats
    a None target), which defers mail forever, while the UI stores "" for the same intent.
    Raises :class:`TransportError` for ``mx:`` with brackets, a missing ``]``, text after
    ``]`` other than ``:port``, a bad port, a host that cannot be IDNA-encoded, or ``lmtp:``
    without a host.
    """
    spec = smtp or ""
    target = spec.strip().lower()
    kind = "smtp"
    use_mx = False
    if target.startswith("mx:"):
        use_mx, target = True, target[3:]
    elif target.startswith("lmtp:"):
        kind, target = "lmtp", target[5:]

    port: str | None = None
    if target.startswith("["):
        if use_mx:
            raise TransportError(
                f"relay {domain!r}: target {spec!r}: mx: cannot be used with a [bracketed] host"
            )
        end = target.find("]")
        if end < 0:
            raise TransportError(f"relay {domain!r}: target {spec!r}: missing ]")
        inner, rest = target[1:end], target[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise TransportError(
                    f"relay {domain!r}: target {spec!r}: unexpected {rest!r} after ]"
                )
            port = _port(domain, spec, rest[1:])
        if not inner:
            raise TransportError(f"relay {domain!r}: target {spec!r}: empty host in []")
        try:
            addr = ipaddress.ip_address(inner.removeprefix("ipv6:"))
        except ValueError:
            addr = None
        if isinstance(addr, ipaddress.IPv6Address):
            nexthop = f"[ipv6:{addr.compressed}]"
        elif addr is not None:
            nexthop = f"[{addr}]"
        else:
            nexthop = f"[{_host(domain, spec, inner)}]"
    else:
        host, colon, port_text = target.partition(":")
        if colon:
            port = _port(domain, spec, port_text)
        if not host:
            if kind == "lmtp":
                raise TransportError(f"relay {domain!r}: target {spec!r}: lmtp: needs a host")
            nexthop = domain  # MX lookup of the relayed domain itself
        else:
            try:
                ipaddress.IPv4Address(host)
                host_text = host
            except ValueError:
                host_text = _host(domain, spec, host)
            nexthop = host_text if use_mx or kind == "lmtp" else f"[{host_text}]"
    return f"{kind}:{nexthop}" + (f":{port}" if port is not None else "")
