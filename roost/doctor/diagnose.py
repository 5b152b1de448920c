"""One run of the doctor: every check of every domain and of the mail host, side by side.

Each check is one task (its lookups, then its pure judgement) in a small thread pool, so
a run with a dead resolver takes a few query timeouts, not one per record. The records
the checks expect are those :mod:`roost.core.dnsrecords` tells the administrator to
publish, so ``roost dns`` and ``roost doctor`` never disagree.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from roost.core import dnsrecords
from roost.core.dane import ServedKey
from roost.core.dnsrecords import Record, fqdn
from roost.doctor import checks
from roost.doctor.findings import UNKNOWN, Finding, Group, Report
from roost.doctor.observed import Certificate, Looked
from roost.doctor.probe import Probe
from roost.doctor.spf import check_host
from roost.settings import Settings

__all__ = ["DomainFacts", "diagnose"]

WORKERS = 16
PORTS_NOTE = (
    "ports were tried from this host, which cannot prove that a firewall or NAT in front "
    "lets outsiders in: try them from another network too"
)
DNSSEC_NOTE = (
    "a TLSA record counts only in a DNSSEC-signed zone; the doctor compares it with the "
    "certificate but does not check the signatures"
)


@dataclass(frozen=True, slots=True)
class DomainFacts:
    """A domain as the store knows it: its alternatives, its DKIM keys (selector, public
    key; the signing key first) and whether mail to its postmaster (POSTMASTER@name) is
    delivered."""

    name: str
    alternatives: tuple[str, ...] = ()
    dkim_keys: tuple[tuple[str, str], ...] = ()
    postmaster: bool = True


Task = Callable[[], list[Finding]]


def _pick(records: Sequence[Record], name: str, rtype: str, owner: str) -> Record | None:
    return next(
        (r for r in records if r.domain == name and r.rtype == rtype and r.name == owner), None
    )


def _domain_tasks(
    settings: Settings,
    probe: Probe,
    name: str,
    records: Sequence[Record],
    keys: Sequence[tuple[str, str]],
    certificate: Certificate | None,
) -> list[Task]:
    """The checks of one domain or alternative."""
    host = settings.hostname
    mx = _pick(records, name, "MX", fqdn(name))
    spf = next(
        r
        for r in records
        if r.domain == name and r.rtype == "TXT" and str(r.data[0]).startswith("v=spf1")
    )
    assert mx is not None
    dkim = [r for r in records if r.domain == name and "._domainkey." in r.name]
    dmarc = _pick(records, name, "TXT", fqdn(f"_dmarc.{name}")) or Record(
        fqdn(f"_dmarc.{name}"), "TXT", (dnsrecords.dmarc_text(settings),), name, "DMARC"
    )
    sts = _pick(records, name, "TXT", fqdn(f"_mta-sts.{name}"))
    tlsrpt = _pick(records, name, "TXT", fqdn(f"_smtp._tls.{name}"))

    def mx_check() -> list[Finding]:
        return [checks.check_mx(name, probe.lookup(name, "MX"), settings.HOSTNAMES, mx)]

    def spf_check() -> list[Finding]:
        txt = probe.lookup(name, "TXT")
        verdicts = []
        if txt.found:
            verdicts = [(a, check_host(a, name, probe.lookup)) for a in probe.addresses(host)]
        return [checks.check_spf(name, txt, verdicts, spf)]

    def dkim_check() -> list[Finding]:
        answers = [probe.lookup(r.name, "TXT") for r in dkim]
        return checks.check_dkim(name, dkim, answers)

    def dmarc_check() -> list[Finding]:
        txt = probe.lookup(f"_dmarc.{name}", "TXT")
        return [checks.check_dmarc(name, txt, dmarc.line, bool(keys))]

    def mta_sts_check() -> list[Finding]:
        txt = probe.lookup(f"_mta-sts.{name}", "TXT")
        announced = any(str(t).lower().startswith("v=stsv1") for t in txt.values)
        policy = probe.fetch_policy(name) if announced else None
        problem = checks.mx_certificate_problem(host, certificate)
        return [checks.check_mta_sts(name, txt, policy, host, sts, problem)]

    def tls_rpt_check() -> list[Finding]:
        return [checks.check_tlsrpt(name, probe.lookup(f"_smtp._tls.{name}", "TXT"), tlsrpt)]

    return [mx_check, spf_check, dkim_check, dmarc_check, mta_sts_check, tls_rpt_check]


def _postmaster_task(settings: Settings, facts: DomainFacts) -> Task:
    return lambda: [checks.check_postmaster(facts.name, settings.POSTMASTER, facts.postmaster)]


def _host_tasks(
    settings: Settings, probe: Probe, certificate: Certificate | None, now: datetime.datetime
) -> list[Task]:
    host = settings.hostname

    def address_check() -> list[Finding]:
        return [checks.check_address(host, probe.lookup(host, "A"), probe.lookup(host, "AAAA"))]

    def reverse_dns_check() -> list[Finding]:
        out = []
        for address in probe.addresses(host):
            ptr = probe.reverse(address)
            rtype = "AAAA" if ":" in address else "A"
            forward: dict[str, Looked] = {str(n): probe.lookup(str(n), rtype) for n in ptr.values}
            out.append(checks.check_reverse(host, address, ptr, forward))
        return out

    def certificate_check() -> list[Finding]:
        return checks.check_certificate(settings.HOSTNAMES, certificate, now)

    def tlsa_check() -> list[Finding]:
        tlsa = probe.lookup(f"_25._tcp.{host}", "TLSA")
        served = certificate or Certificate()
        key = ServedKey(served.spkis[0], served.self_signed) if served.spkis else None
        expected = dnsrecords.tlsa_records(settings, key)
        return [checks.check_tlsa(host, tlsa, served, expected)]

    def ports_check() -> list[Finding]:
        wanted = [p for p in sorted(set(settings.PORTS) | {25}) if settings.port_enabled(p)]
        addresses = probe.addresses(host)
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = list(
                pool.map(lambda ap: probe.port(*ap), [(a, p) for a in addresses for p in wanted])
            )
        return checks.check_ports(found)

    return [address_check, reverse_dns_check, certificate_check, tlsa_check, ports_check]


def _guarded(task: Task) -> list[Finding]:
    """A check that fails by itself (a bug, an odd answer) is reported, not a traceback:
    the other checks' findings still count."""
    try:
        return task()
    except Exception as exc:
        check = task.__name__.removesuffix("_check").replace("_", "-")
        return [Finding(check, UNKNOWN, f"the check failed: {type(exc).__name__}: {exc}")]


def diagnose(
    settings: Settings,
    domains: Sequence[DomainFacts],
    probe: Probe,
    certificate: Certificate | None,
    now: datetime.datetime,
) -> Report:
    """Check every domain (and its alternatives) and the mail host HOSTNAMES[0]."""
    plan: list[tuple[str, str, str, list[Task]]] = []
    for facts in domains:
        records = dnsrecords.records(
            settings, facts.name, facts.alternatives, dkim_keys=facts.dkim_keys
        )
        for name in (facts.name, *facts.alternatives):
            note = "" if name == facts.name else f"alternative of {facts.name}"
            tasks = _domain_tasks(settings, probe, name, records, facts.dkim_keys, certificate)
            if name == facts.name:  # an alternative's postmaster is the primary's
                tasks.append(_postmaster_task(settings, facts))
            plan.append((name, "domain", note, tasks))
    plan.append((settings.hostname, "host", "", _host_tasks(settings, probe, certificate, now)))
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures: list[tuple[str, str, str, list[Future[list[Finding]]]]] = [
            (name, kind, note, [pool.submit(_guarded, task) for task in tasks])
            for name, kind, note, tasks in plan
        ]
        groups = tuple(
            Group(name, kind, tuple(f for future in group for f in future.result()), note)
            for name, kind, note, group in futures
        )
    notes = [PORTS_NOTE] if any(f.check == "ports" for g in groups for f in g.findings) else []
    if probe.lookup(f"_25._tcp.{settings.hostname}", "TLSA").found:  # asked already
        notes.append(DNSSEC_NOTE)
    return Report(groups, tuple(notes))
