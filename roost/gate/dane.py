"""The ``dane`` socketmap: DANE before MTA-STS for outgoing mail.

Postfix takes a destination's TLS policy from the first of ``smtp_tls_policy_maps`` that
knows it, and the MTA-STS resolver answers ``secure`` for any domain with a policy, which
would switch DANE off for it. RFC 8461 section 2 wants the opposite where a domain has
both: DANE wins. So Postfix asks this map before the MTA-STS resolver. For a next-hop
domain whose MX RRset is DNSSEC-signed and at least one of whose MX hosts (the domain
itself without MX records, RFC 5321 section 5.1) has a signed TLSA RRset at
``_25._tcp.<host>`` (RFC 7672 sections 2.2 and 3), the answer is the DANE level itself
(OUTBOUND_TLS_LEVEL, ``dane`` or ``dane-only``): Postfix then does its own DANE lookups
and checks, and the MTA-STS resolver is never asked. Any other domain is ``NOTFOUND``.

When the lookups fail (a bogus signature is a SERVFAIL from a validating resolver, or no
answer at all), the domain may be a DANE domain under attack: with DEFER_ON_TLS_ERROR the
answer is the DANE level too, so Postfix repeats the lookups and defers rather than letting
an MTA-STS policy stand in for DANE (RFC 8461 section 2); without it, ``NOTFOUND``.

Mailu's admin answers the same question by a TLSA lookup at ``_25._tcp.<domain>``; TLSA
records belong to the MX hosts, so Roost asks there.
"""

from __future__ import annotations

import asyncio
import logging

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.rdatatype
import dns.resolver

from roost.layout import Layout
from roost.settings import Settings

__all__ = ["DaneCheck", "dane_applies"]

log = logging.getLogger("roost.gate")

#: MX hosts looked at, most preferred first; Postfix tries few more (smtp_mx_address_limit).
MAX_HOSTS = 5
#: Each query's time, and the whole check's (Postfix's socketmap client waits 100 s).
QUERY_TIMEOUT = 3.0
CHECK_TIMEOUT = 8.0


def dane_applies(signed_tlsa: bool, failed: bool, defer_on_error: bool) -> bool:
    """Whether a domain keeps the DANE level instead of asking MTA-STS (pure)."""
    return signed_tlsa or (failed and defer_on_error)


class _Failed(Exception):
    """A lookup gave no usable answer (SERVFAIL, timeout, no resolver)."""


class DaneCheck:
    """Asks the validating resolver (DNS_RESOLVER) about a domain's MX hosts' TLSA records."""

    def __init__(self, settings: Settings) -> None:
        self.level = settings.OUTBOUND_TLS_LEVEL
        self.defer_on_error = settings.DEFER_ON_TLS_ERROR
        address = Layout(settings).validating_resolver
        resolver = dns.asyncresolver.Resolver(configure=False)
        if address is not None:
            resolver.nameservers = [address]
        else:
            try:
                resolver.read_resolv_conf("/etc/resolv.conf")
            except dns.resolver.NoResolverConfiguration as exc:
                # No resolver at all: every lookup fails, as it does for Postfix.
                log.warning("dane: %s; DANE lookups will fail", exc)
        # Ask for DNSSEC records and for the AD bit (RFC 6840 section 5.7).
        resolver.use_edns(0, dns.flags.DO, 1232)
        resolver.flags = dns.flags.RD | dns.flags.AD
        resolver.timeout = QUERY_TIMEOUT
        resolver.lifetime = QUERY_TIMEOUT
        self._resolver = resolver

    async def policy(self, key: str) -> str | None:
        """The DANE level for a next-hop domain that has signed TLSA records, else None."""
        domain = key.rstrip(".").lower()
        # Parent-domain keys (".example.com") and [host]:port next hops are not domains
        # that have MX records; Postfix's own DANE covers [host] next hops.
        if not domain or domain.startswith(".") or "[" in domain or ":" in domain:
            return None
        try:
            signed, failed = await asyncio.wait_for(self._check(domain), CHECK_TIMEOUT)
        except TimeoutError:
            signed, failed = False, True
        if dane_applies(signed, failed, self.defer_on_error):
            if not signed:
                log.info("dane %s: DNS lookups failed; keeping DANE (DEFER_ON_TLS_ERROR)", domain)
            return self.level
        return None

    async def _check(self, domain: str) -> tuple[bool, bool]:
        """(some MX host has a signed TLSA RRset, a lookup failed)."""
        try:
            hosts = await self._mx_hosts(domain)
        except _Failed:
            return False, True
        if not hosts:
            return False, False
        results = await asyncio.gather(*(self._signed_tlsa(host) for host in hosts))
        signed = any(result is True for result in results)
        return signed, any(result is None for result in results)

    async def _query(
        self, name: str, rdtype: dns.rdatatype.RdataType
    ) -> dns.resolver.Answer | None:
        """The answer (possibly empty), None for a name that does not exist."""
        try:
            return await self._resolver.resolve(name, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return None
        except (dns.exception.DNSException, OSError) as exc:
            raise _Failed(str(exc)) from None

    async def _mx_hosts(self, domain: str) -> list[str]:
        """The MX hosts of a signed MX RRset, most preferred first; [] when DANE cannot
        apply (unsigned, no such domain, a null MX)."""
        answer = await self._query(domain, dns.rdatatype.MX)
        if answer is None or not answer.response.flags & dns.flags.AD:
            return []
        if answer.rrset is None:
            return [domain]  # no MX: the domain is its own host (RFC 5321 section 5.1)
        records = sorted(answer.rrset, key=lambda mx: mx.preference)
        hosts = [mx.exchange.to_text(omit_final_dot=True).lower() for mx in records]
        return [host for host in hosts if host][:MAX_HOSTS]

    async def _signed_tlsa(self, host: str) -> bool | None:
        """True: a signed TLSA RRset at _25._tcp.<host>; False: none; None: lookup failed."""
        try:
            answer = await self._query(f"_25._tcp.{host}", dns.rdatatype.TLSA)
        except _Failed:
            return None
        return bool(
            answer is not None and answer.rrset is not None and answer.response.flags & dns.flags.AD
        )
