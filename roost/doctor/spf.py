"""Whether a domain's SPF policy lets an address send (RFC 7208 §4 ``check_host()``).

The evaluation asks DNS only through the ``lookup`` it is given, so it is pure over the
answers: the doctor hands it its dnspython lookups, the tests a dictionary. It covers what
mail domains publish: ``all``, ``include``, ``a``, ``mx``, ``ip4``, ``ip6``, ``exists``
without macros, ``ptr`` (RFC 7208 §5.5: never matched here, as it should not be used) and
``redirect``, within RFC 7208 §4.6.4's limit of 10 DNS-querying terms. A policy with
macros (RFC 7208 §7) is reported as not evaluated rather than guessed at.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from roost.doctor.observed import Lookup

__all__ = ["NOT_EVALUATED", "SpfResult", "check_host", "spf_records"]

#: RFC 7208 §4.6.4: at most 10 terms that query DNS, and 10 MX exchanges for one "mx".
LOOKUP_LIMIT = 10
#: The doctor's own result for a policy it cannot evaluate (macros).
NOT_EVALUATED = "not evaluated"
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MODIFIER = re.compile(r"([a-z][a-z0-9._-]*)=", re.IGNORECASE)
_VERSION = re.compile(r"v=spf1( |$)", re.IGNORECASE)
_MECHANISM = re.compile(
    r"(?P<q>[-+~?]?)(?P<name>[a-z0-9]+)(?::(?P<spec>[^/]*))?"
    r"(?:/(?P<c4>\d+))?(?://(?P<c6>\d+))?$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class SpfResult:
    """RFC 7208 §2.6's result (pass, fail, softfail, neutral, none, permerror, temperror,
    or :data:`NOT_EVALUATED`) and why, in words."""

    result: str
    reason: str = ""


class _Stop(Exception):
    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome = SpfResult(result, reason)


def spf_records(texts: tuple[str, ...]) -> list[str]:
    """The SPF records among a name's TXT texts (RFC 7208 §4.5: ``v=spf1`` then a space
    or the end)."""
    return [text for text in texts if _VERSION.match(text)]


def check_host(address: str, domain: str, lookup: Lookup) -> SpfResult:
    """The SPF result for mail from ``address`` with a sender at ``domain``."""
    budget = [LOOKUP_LIMIT]
    try:
        return _check(ipaddress.ip_address(address), domain.lower().rstrip("."), lookup, budget)
    except _Stop as stop:
        return stop.outcome


def _record(domain: str, lookup: Lookup) -> str | None:
    answer = lookup(domain, "TXT")
    if answer.unknown:
        raise _Stop("temperror", f"TXT of {domain}: {answer.reason}")
    records = spf_records(tuple(answer.values))
    if len(records) > 1:
        raise _Stop("permerror", f"{domain} has {len(records)} SPF records (RFC 7208 §4.5)")
    return records[0] if records else None


def _spend(budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise _Stop("permerror", "more than 10 DNS lookups (RFC 7208 §4.6.4)")


def _check(ip: ipaddress._BaseAddress, domain: str, lookup: Lookup, budget: list[int]) -> SpfResult:
    record = _record(domain, lookup)
    if record is None:
        return SpfResult("none", f"{domain} has no SPF record")
    if "%" in record:
        raise _Stop(NOT_EVALUATED, f"the SPF record of {domain} uses macros (RFC 7208 §7)")
    redirect = ""
    for term in record.split()[1:]:
        modifier = _MODIFIER.match(term)
        if modifier:
            if modifier[1].lower() == "redirect":
                redirect = term[modifier.end() :]
            continue  # exp= and unknown modifiers change no result (RFC 7208 §6)
        match = _MECHANISM.match(term)
        if match is None:
            raise _Stop("permerror", f"{domain}: {term!r} is not an SPF term")
        if _matches(ip, domain, match, lookup, budget):
            qualifier = _QUALIFIERS[match["q"] or "+"]
            return SpfResult(qualifier, f"{term!r} in the SPF record of {domain}")
    if redirect:
        _spend(budget)
        result = _check(ip, redirect.lower().rstrip("."), lookup, budget)
        if result.result == "none":
            raise _Stop("permerror", f"redirect={redirect}: {result.reason}")
        return result
    return SpfResult("neutral", f"nothing in the SPF record of {domain} names it")


def _matches(
    ip: ipaddress._BaseAddress,
    domain: str,
    match: re.Match[str],
    lookup: Lookup,
    budget: list[int],
) -> bool:
    kind = match["name"].lower()
    target = (match["spec"] or domain).lower().rstrip(".")
    if kind == "all":
        return True
    if kind in ("ip4", "ip6"):
        try:
            network = ipaddress.ip_network(f"{match['spec']}/{match['c4'] or ''}".rstrip("/"))
        except ValueError:
            raise _Stop("permerror", f"{domain}: {match.string!r} is not a network") from None
        return ip.version == network.version and ip in network
    if kind == "include":
        _spend(budget)
        result = _check(ip, target, lookup, budget)
        if result.result in ("temperror", "permerror", NOT_EVALUATED):
            raise _Stop(result.result, result.reason)
        if result.result == "none":
            raise _Stop("permerror", f"include:{target}: {result.reason}")
        return result.result == "pass"
    if kind == "a":
        _spend(budget)
        return _in_addresses(ip, target, match, lookup)
    if kind == "mx":
        _spend(budget)
        answer = lookup(target, "MX")
        if answer.unknown:
            raise _Stop("temperror", f"MX of {target}: {answer.reason}")
        hosts = [host for _, host in answer.values if host][:LOOKUP_LIMIT]
        return any(_in_addresses(ip, host, match, lookup) for host in hosts)
    if kind == "exists":
        _spend(budget)
        answer = lookup(target, "A")
        if answer.unknown:
            raise _Stop("temperror", f"A of {target}: {answer.reason}")
        return answer.found
    if kind == "ptr":
        _spend(budget)
        return False
    raise _Stop("permerror", f"{domain}: unknown mechanism {match['name']!r}")


def _in_addresses(
    ip: ipaddress._BaseAddress, host: str, match: re.Match[str], lookup: Lookup
) -> bool:
    """Whether ``ip`` is one of ``host``'s addresses, within the term's prefix lengths."""
    rtype, prefix = (
        ("A", match["c4"] or "32") if ip.version == 4 else ("AAAA", match["c6"] or "128")
    )
    answer = lookup(host, rtype)
    if answer.unknown:
        raise _Stop("temperror", f"{rtype} of {host}: {answer.reason}")
    for value in answer.values:
        try:
            if ip in ipaddress.ip_network(f"{value}/{prefix}", strict=False):
                return True
        except ValueError:
            continue
    return False
