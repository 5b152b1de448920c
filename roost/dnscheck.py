"""Whether each DNS record a domain should publish is live in DNS now.

The records come from :mod:`roost.core.dnsrecords`; this module asks a resolver (the
system's, or one named for tests and for ``roost dns --check --resolver``) with dnspython
and compares what it answers with what should be there. A record is ``live`` when one of
the answers carries the published value: MX exchange and preference, the TXT text exactly
(its character-strings joined, RFC 7208 §3.3), the SRV target and port, the CNAME target,
the TLSA fields and data.

A DNS problem never raises: a timeout, a refused query or a broken resolver configuration
is the state ``unknown`` with the reason. Every query has a short timeout and all of them
run side by side under one deadline, so a page that shows the states waits a few seconds
at most, whatever the network does. :func:`query` is the one lookup underneath, for the
checks that need the answers themselves (``roost doctor``).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from roost.core.dnsrecords import Record

__all__ = [
    "LIVE",
    "MISSING",
    "UNKNOWN",
    "WRONG",
    "Answer",
    "Check",
    "ResolverAddress",
    "check_records",
    "make_resolver",
    "mx_exchanges",
    "parse_resolver",
    "query",
]

LIVE = "live"  # an answer carries the published value
WRONG = "wrong"  # answers exist, none with the published value
MISSING = "missing"  # no such name, or no record of this type
UNKNOWN = "unknown"  # the resolver did not tell (timeout, SERVFAIL, ...)

#: Seconds for one query to one server, and for all the checks of one call.
QUERY_TIMEOUT = 2.0
TOTAL_TIMEOUT = 5.0
#: Queries in flight at once.
WORKERS = 8


@dataclass(frozen=True, slots=True)
class ResolverAddress:
    """A resolver to ask instead of the system's: an IP address and a port."""

    host: str
    port: int = 53


@dataclass(frozen=True, slots=True)
class Check:
    """One record's state, what DNS answered (presentation form) and why, if unknown."""

    record: Record
    state: str
    found: tuple[str, ...] = ()
    reason: str = ""


def parse_resolver(text: str) -> ResolverAddress:
    """``ADDR``, ``ADDR:PORT``, ``[V6]`` or ``[V6]:PORT``; raises ValueError with a message."""
    raw = text.strip()
    host, port = raw, "53"
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"resolver {text!r}: write an IPv6 address as [ADDR] or [ADDR]:PORT")
        port = rest[1:] or "53"
    elif raw.count(":") == 1:
        host, port = raw.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"resolver {text!r}: not an IP address (ADDR[:PORT])") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"resolver {text!r}: the port must be 1 to 65535")
    return ResolverAddress(str(address), int(port))


def make_resolver(server: ResolverAddress | None, timeout: float) -> dns.resolver.Resolver:
    """A resolver that tries each server once within ``timeout`` (no search list).

    Raises dns.exception.DNSException, OSError or ValueError when the system's resolver
    configuration cannot be read."""
    if server is None:
        resolver = dns.resolver.Resolver(configure=True)
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [server.host]
        resolver.port = server.port
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.search = []
    resolver.use_search_by_default = False
    resolver.cache = None
    return resolver


def _normal(name: str) -> str:
    return name.lower().rstrip(".") + "."


def _answer_data(rdata: object, rtype: str) -> tuple[str | int, ...]:
    """A live answer's fields in the shape of :attr:`Record.data`."""
    if rtype == "MX":
        return (int(rdata.preference), _normal(rdata.exchange.to_text()))  # type: ignore[attr-defined]
    if rtype == "TXT":
        text = b"".join(rdata.strings).decode("utf-8", "replace")  # type: ignore[attr-defined]
        return (text,)
    if rtype == "SRV":
        target = rdata.target.to_text()  # type: ignore[attr-defined]
        return (
            int(rdata.priority),  # type: ignore[attr-defined]
            int(rdata.weight),  # type: ignore[attr-defined]
            int(rdata.port),  # type: ignore[attr-defined]
            "." if target == "." else _normal(target),
        )
    if rtype == "CNAME":
        return (_normal(rdata.target.to_text()),)  # type: ignore[attr-defined]
    if rtype == "TLSA":
        return (
            int(rdata.usage),  # type: ignore[attr-defined]
            int(rdata.selector),  # type: ignore[attr-defined]
            int(rdata.mtype),  # type: ignore[attr-defined]
            rdata.cert.hex(),  # type: ignore[attr-defined]
        )
    return (rdata.to_text(),)  # type: ignore[attr-defined]


def _matches(record: Record, found: tuple[str | int, ...]) -> bool:
    """Whether a live answer carries the published value (see the module's docstring)."""
    want = record.data
    if record.rtype == "MX":
        return found[0] == want[0] and found[1] == _normal(str(want[1]))
    if record.rtype == "SRV":
        target = str(want[3])
        return found[2] == want[2] and found[3] == ("." if target == "." else _normal(target))
    if record.rtype == "CNAME":
        return found[0] == _normal(str(want[0]))
    if record.rtype == "TLSA":
        return found[:3] == want[:3] and str(found[3]) == str(want[3]).lower()
    return found == want


@dataclass(frozen=True, slots=True)
class Answer:
    """What one query got: ``LIVE`` with the records (dnspython rdata), ``MISSING`` (no
    such name, or none of this type) or ``UNKNOWN`` with the reason."""

    state: str
    rdatas: tuple[Any, ...] = ()
    reason: str = ""


def query(resolver: dns.resolver.Resolver, name: str, rtype: str) -> Answer:
    """Ask for ``name``'s records of ``rtype``; never raises on DNS errors."""
    try:
        answer = resolver.resolve(
            dns.name.from_text(name), rtype, raise_on_no_answer=False, search=False
        )
    except dns.resolver.NXDOMAIN:
        return Answer(MISSING, reason="no such name")
    except dns.resolver.NoNameservers as exc:
        return Answer(UNKNOWN, reason=f"no server answered: {_first_line(exc)}")
    except dns.exception.Timeout:
        return Answer(UNKNOWN, reason="the resolver did not answer in time")
    except dns.exception.DNSException as exc:
        return Answer(UNKNOWN, reason=_first_line(exc) or type(exc).__name__)
    except (OSError, ValueError) as exc:
        return Answer(UNKNOWN, reason=f"cannot ask the resolver: {exc}")
    if answer.rrset is None:
        return Answer(MISSING, reason=f"no {rtype} record")
    return Answer(LIVE, tuple(answer.rrset))


def _lookup(
    resolver: dns.resolver.Resolver, name: str, rtype: str
) -> tuple[str, list[tuple[str | int, ...]], list[str], str]:
    """(state so far, answers as data, answers as text, reason); never raises."""
    answer = query(resolver, name, rtype)
    if answer.state != LIVE:
        return answer.state, [], [], answer.reason
    data = [_answer_data(rdata, rtype) for rdata in answer.rdatas]
    texts = [rdata.to_text() for rdata in answer.rdatas]
    return "", data, texts, ""


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else ""


def check_records(
    records: Sequence[Record],
    server: ResolverAddress | None = None,
    *,
    query_timeout: float = QUERY_TIMEOUT,
    total_timeout: float = TOTAL_TIMEOUT,
) -> list[Check]:
    """One :class:`Check` per record, in the records' order; never raises on DNS errors.

    Each (name, type) is asked once. A query still out at the deadline is ``unknown``.
    """
    try:
        resolver = make_resolver(server, query_timeout)
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        reason = f"no resolver: {_first_line(exc) or type(exc).__name__}"
        return [Check(record, UNKNOWN, reason=reason) for record in records]
    keys = list(dict.fromkeys((_normal(r.name), r.rtype) for r in records))
    deadline = time.monotonic() + total_timeout
    pool = ThreadPoolExecutor(max_workers=min(WORKERS, max(1, len(keys))))
    try:
        futures = {key: pool.submit(_lookup, resolver, *key) for key in keys}
        results = {}
        for key, future in futures.items():
            try:
                results[key] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:  # a timeout, or a bug in a lookup: never a 500
                results[key] = (UNKNOWN, [], [], _reason(exc))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return [_judge(record, results[(_normal(record.name), record.rtype)]) for record in records]


def mx_exchanges(
    domain: str, server: ResolverAddress | None = None, *, timeout: float = QUERY_TIMEOUT
) -> tuple[str, tuple[str, ...], str]:
    """The MX exchanges of ``domain`` (lower case, no final dot) with a state: LIVE when
    there are some, MISSING when there are none, UNKNOWN with the reason when the
    resolver did not tell. Never raises on DNS errors."""
    try:
        resolver = make_resolver(server, timeout)
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        return UNKNOWN, (), f"no resolver: {_first_line(exc) or type(exc).__name__}"
    state, data, _texts, reason = _lookup(resolver, domain, "MX")
    if state:
        return state, (), reason
    hosts = tuple(dict.fromkeys(str(found[1]).rstrip(".") for found in data))
    return (LIVE, hosts, "") if hosts else (MISSING, (), "no MX record")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer before the deadline"
    return f"lookup failed: {type(exc).__name__}"


def _judge(
    record: Record, result: tuple[str, list[tuple[str | int, ...]], list[str], str]
) -> Check:
    state, data, texts, reason = result
    if state:
        return Check(record, state, reason=reason)
    if any(_matches(record, found) for found in data):
        return Check(record, LIVE, tuple(texts))
    return Check(record, WRONG, tuple(texts))


def summary(checks: Iterable[Check]) -> dict[str, int]:
    """How many records are in each state."""
    counts = {LIVE: 0, WRONG: 0, MISSING: 0, UNKNOWN: 0}
    for check in checks:
        counts[check.state] = counts.get(check.state, 0) + 1
    return counts
