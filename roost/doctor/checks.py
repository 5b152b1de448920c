"""The doctor's checks: pure judgements of what the probes saw, one small function each.

Every function takes plain values (:mod:`roost.doctor.observed`, the records Roost
publishes from :mod:`roost.core.dnsrecords`) and returns findings with the standard it
follows and, for a problem, the fix: the zone-file line to publish or the setting to
change. A DNS answer that did not come is ``unknown``, never "missing".
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from roost.core import mtasts
from roost.core.dane import tlsa_digest
from roost.core.dnsrecords import Record
from roost.doctor.findings import ERROR, OK, UNKNOWN, WARNING, Finding
from roost.doctor.observed import Certificate, Looked, Policy, Port
from roost.doctor.spf import NOT_EVALUATED, SpfResult, spf_records
from roost.tls.check import covers

__all__ = [
    "EXPIRY_WARNING_DAYS",
    "check_address",
    "check_certificate",
    "check_dkim",
    "check_dmarc",
    "check_mta_sts",
    "check_mx",
    "check_ports",
    "check_reverse",
    "check_spf",
    "check_tlsa",
    "check_tlsrpt",
    "mx_certificate_problem",
]

#: A certificate that ends within this many days is a warning.
EXPIRY_WARNING_DAYS = 14


def _unknown(check: str, what: str, answer: Looked, reference: str) -> Finding:
    return Finding(check, UNKNOWN, f"could not look up {what}: {answer.reason}", "", reference)


def _txt_starting(answer: Looked, prefix: str) -> list[str]:
    """The TXT texts that start with ``prefix`` (a version tag), ignoring case."""
    return [str(t) for t in answer.values if str(t).lower().startswith(prefix.lower())]


# -- per domain ----------------------------------------------------------------------------


def check_mx(domain: str, mx: Looked, hostnames: Sequence[str], expected: Record) -> Finding:
    """The domain's mail must come to one of HOSTNAMES (RFC 5321 §5.1)."""
    ref = "RFC 5321 §5.1"
    if mx.unknown:
        return _unknown("mx", f"the MX of {domain}", mx, ref)
    if not mx.found:
        return Finding(
            "mx",
            ERROR,
            f"no MX record: senders have nowhere to deliver {domain}'s mail",
            expected.line,
            ref,
        )
    hosts = [str(host) for _, host in sorted(mx.values)]
    if hosts == [""]:
        return Finding(
            "mx",
            ERROR,
            f"a null MX (RFC 7505): {domain} says it accepts no mail at all",
            expected.line,
            ref,
        )
    ours = {h.lower() for h in hostnames}
    mine = [h for h in hosts if h in ours]
    others = [h or "." for h in hosts if h not in ours]
    if not mine:
        return Finding(
            "mx",
            ERROR,
            f"MX points to {', '.join(others)}, none of HOSTNAMES: mail goes elsewhere",
            expected.line,
            ref,
        )
    if others:
        return Finding(
            "mx",
            WARNING,
            f"MX lists {', '.join(mine)} but also {', '.join(others)}, which is not one of "
            "HOSTNAMES: mail delivered there reaches Roost only if that host passes it on",
            f"remove the other MX records, keeping {expected.line}",
            ref,
        )
    return Finding("mx", OK, f"MX points to {', '.join(mine)}", "", ref)


def check_spf(
    domain: str,
    txt: Looked,
    verdicts: Sequence[tuple[str, SpfResult]],
    expected: Record,
) -> Finding:
    """One SPF record (RFC 7208 §4.5) that passes each address of the mail host
    (``verdicts``: address -> check_host's result)."""
    ref = "RFC 7208 §4.5"
    if txt.unknown:
        return _unknown("spf", f"the TXT records of {domain}", txt, ref)
    records = spf_records(tuple(str(t) for t in txt.values))
    if not records:
        return Finding(
            "spf",
            ERROR,
            f"no SPF record: anyone can send as {domain}, and receivers distrust its mail",
            expected.line,
            ref,
        )
    if len(records) > 1:
        return Finding(
            "spf",
            ERROR,
            f"{len(records)} SPF records: receivers treat that as a permanent error, "
            "so SPF fails for every message",
            f"keep one, e.g. {expected.line}",
            ref,
        )
    for address, verdict in verdicts:
        if verdict.result == "temperror":
            return Finding(
                "spf", UNKNOWN, f"could not evaluate for {address}: {verdict.reason}", "", ref
            )
        if verdict.result == NOT_EVALUATED:
            return Finding("spf", WARNING, f"not evaluated: {verdict.reason}", "", ref)
        if verdict.result != "pass":
            return Finding(
                "spf",
                ERROR,
                f"the SPF record does not allow the mail host's address {address} "
                f"(result {verdict.result}: {verdict.reason})",
                f"replace it with {expected.line}",
                "RFC 7208 §2.6",
            )
    allowed = f": allows {', '.join(a for a, _ in verdicts)}" if verdicts else ""
    return Finding("spf", OK, f"one SPF record{allowed}", "", ref)


def _dkim_key(text: str) -> str:
    """The ``p=`` value of a DKIM key record, whitespace removed (RFC 6376 §3.6.1)."""
    for tag in text.split(";"):
        name, _, value = tag.partition("=")
        if name.strip() == "p":
            return "".join(value.split())
    return ""


def check_dkim(domain: str, expected: Sequence[Record], answers: Sequence[Looked]) -> list[Finding]:
    """Each DKIM key record must carry the stored key (RFC 6376 §3.6.2.1); ``expected``
    (the signing key first, then a rotation's other key) pairs with ``answers``. No
    records expected: the domain has no key, and its mail goes unsigned."""
    ref = "RFC 6376 §3.6.2"
    if not expected:
        return [
            Finding(
                "dkim",
                WARNING,
                f"{domain} has no DKIM key: its mail is not signed, and DMARC rests on SPF alone",
                f"roost dkim generate {domain} (then publish the records it prints)",
                ref,
            )
        ]
    out = []
    for index, (record, answer) in enumerate(zip(expected, answers, strict=True)):
        name = record.name.rstrip(".")
        want = _dkim_key(str(record.data[0]))
        severity = ERROR if index == 0 else WARNING
        role = "signing key" if index == 0 else "rotation's other key"
        if answer.unknown:
            out.append(_unknown("dkim", f"the DKIM record {name}", answer, ref))
        elif not [t for t in answer.values if _dkim_key(str(t))]:
            out.append(
                Finding(
                    "dkim",
                    severity,
                    f"no DKIM record at {name} for the {role}: receivers cannot verify "
                    "the signatures",
                    record.line,
                    ref,
                )
            )
        elif not any(_dkim_key(str(t)) == want for t in answer.values):
            out.append(
                Finding(
                    "dkim",
                    severity,
                    f"the DKIM record at {name} holds another key than the stored {role}: "
                    "every signature fails",
                    f"replace it with {record.line}",
                    ref,
                )
            )
        else:
            out.append(Finding("dkim", OK, f"{name} carries the {role}", "", ref))
    return out


_DMARC_POLICIES = ("none", "quarantine", "reject")


def _dmarc_problem(text: str) -> tuple[str, str]:
    """(problem, policy) of a DMARC record (RFC 7489 §6.3, §6.4); problem empty when usable."""
    tags = [part.strip() for part in text.split(";") if part.strip()]
    if not tags or "".join(tags[0].split()) != "v=DMARC1":
        return "it must start with v=DMARC1", ""
    values: dict[str, str] = {}
    for tag in tags[1:]:
        name, sep, value = tag.partition("=")
        if not sep:
            return f"{tag!r} is not tag=value", ""
        values[name.strip().lower()] = value.strip()
    policy = values.get("p", "").lower()
    if policy not in _DMARC_POLICIES:
        return "it needs p=none, p=quarantine or p=reject", ""
    if values.get("sp", "none").lower() not in _DMARC_POLICIES:
        return f"sp={values['sp']} is not none, quarantine or reject", policy
    for align in ("adkim", "aspf"):
        if values.get(align, "r").lower() not in ("r", "s"):
            return f"{align}={values[align]} is not r or s", policy
    pct = values.get("pct", "100")
    if not pct.isdigit() or int(pct) > 100:
        return f"pct={pct} is not 0 to 100", policy
    return "", policy


def check_dmarc(domain: str, txt: Looked, expected_line: str, has_key: bool) -> Finding:
    """One parseable DMARC record at ``_dmarc.<domain>`` (RFC 7489 §6.6.3)."""
    ref = "RFC 7489 §6.6.3"
    fix = expected_line if has_key else f"roost dkim generate {domain}, then {expected_line}"
    if txt.unknown:
        return _unknown("dmarc", f"_dmarc.{domain}", txt, ref)
    records = _txt_starting(txt, "v=DMARC1")
    if not records:
        return Finding(
            "dmarc",
            ERROR,
            f"no DMARC record: receivers do not know to refuse mail forged in the name of {domain}",
            fix,
            ref,
        )
    if len(records) > 1:
        return Finding(
            "dmarc",
            ERROR,
            f"{len(records)} DMARC records: receivers ignore DMARC for {domain}",
            f"keep one, e.g. {expected_line}",
            ref,
        )
    problem, policy = _dmarc_problem(records[0])
    if problem:
        return Finding(
            "dmarc", ERROR, f"the DMARC record is unusable: {problem}", fix, "RFC 7489 §6.3"
        )
    if policy == "none":
        return Finding(
            "dmarc",
            WARNING,
            "p=none: receivers only report forged mail and still deliver it",
            fix,
            "RFC 7489 §6.3",
        )
    return Finding("dmarc", OK, f"p={policy}", "", ref)


def check_mta_sts(
    domain: str,
    txt: Looked,
    policy: Policy | None,
    mx_host: str,
    expected: Record | None,
    mx_certificate_problem: str = "",
) -> Finding:
    """MTA-STS (RFC 8461): a ``_mta-sts`` record must lead to a policy fetched over HTTPS
    that lists the MX host; when Roost serves the policy (``expected``: its TXT record) the
    record's id must be Roost's, or senders keep a stale copy. Under mode enforce the MX
    host's certificate must be valid (``mx_certificate_problem`` says why it is not)."""
    ref = "RFC 8461 §3"
    if txt.unknown:
        return _unknown("mta-sts", f"_mta-sts.{domain}", txt, ref)
    records = _txt_starting(txt, "v=STSv1")
    if not records:
        if expected is not None:
            return Finding(
                "mta-sts",
                WARNING,
                "Roost serves a policy but no _mta-sts record announces it, so senders "
                "never fetch it",
                expected.line,
                ref,
            )
        return Finding(
            "mta-sts",
            OK,
            "not published (to have Roost serve a policy, add "
            f"{mtasts.policy_host(domain)} to HOSTNAMES)",
            "",
            ref,
        )
    fix = expected.line if expected is not None else ""
    if len(records) > 1:
        return Finding(
            "mta-sts",
            ERROR,
            f"{len(records)} _mta-sts records: senders ignore the policy",
            f"keep one: {fix}" if fix else "keep one",
            "RFC 8461 §3.1",
        )
    published_id, problem = mtasts.parse_sts_record(records[0])
    if published_id is None:
        return Finding(
            "mta-sts", ERROR, f"the _mta-sts record is unusable: {problem}", fix, "RFC 8461 §3.1"
        )
    if policy is None or policy.error:
        reason = policy.error if policy else "it was not fetched"
        return Finding(
            "mta-sts",
            ERROR,
            f"the policy cannot be fetched from https://{mtasts.policy_host(domain)}"
            f"{mtasts.POLICY_PATH}: {reason}; senders ignore it",
            "a certificate from a public CA that covers "
            f"{mtasts.policy_host(domain)} (TLS_FLAVOR=letsencrypt), and "
            f"{mtasts.policy_host(domain)} in HOSTNAMES",
            "RFC 8461 §3.3",
        )
    if policy.status != 200:
        return Finding(
            "mta-sts",
            ERROR,
            f"{policy.url} answered HTTP {policy.status}, not 200 (senders follow no "
            "redirects): senders ignore the policy",
            f"add {mtasts.policy_host(domain)} to HOSTNAMES",
            "RFC 8461 §3.3",
        )
    if policy.content_type.split(";")[0].strip().lower() != "text/plain":
        return Finding(
            "mta-sts",
            ERROR,
            f"{policy.url} is {policy.content_type or 'of no media type'}, not text/plain",
            "",
            "RFC 8461 §3.2",
        )
    parsed, problem = mtasts.parse_policy(policy.body)
    if parsed is None:
        return Finding("mta-sts", ERROR, f"the policy is unusable: {problem}", "", "RFC 8461 §3.2")
    if parsed.mode != "none" and not any(mtasts.mx_matches(p, mx_host) for p in parsed.mx):
        severity = ERROR if parsed.mode == "enforce" else WARNING
        return Finding(
            "mta-sts",
            severity,
            f"the policy (mode {parsed.mode}) does not list {mx_host}: senders that honour "
            "it refuse to deliver" + ("" if severity == ERROR else " once it is enforced"),
            f"list mx: {mx_host} in the policy",
            "RFC 8461 §4.1",
        )
    if expected is not None:
        want_id, _ = mtasts.parse_sts_record(str(expected.data[0]))
        if published_id != want_id:
            return Finding(
                "mta-sts",
                WARNING,
                f"id={published_id} is not that of the policy served now ({want_id}): "
                "senders that have the old one do not fetch the new one",
                expected.line,
                "RFC 8461 §3.1",
            )
    if parsed.mode == "enforce" and mx_certificate_problem:
        return Finding(
            "mta-sts",
            ERROR,
            f"mode enforce, but {mx_host}'s certificate is not valid ({mx_certificate_problem}): "
            "senders that honour the policy refuse to deliver",
            "TLS_FLAVOR=letsencrypt, or a certificate from a public CA; or MTA_STS_MODE=testing "
            "until then",
            "RFC 8461 §4.2",
        )
    return Finding(
        "mta-sts", OK, f"mode {parsed.mode}, lists {mx_host}, id={published_id}", "", ref
    )


def check_tlsrpt(domain: str, txt: Looked, expected: Record | None) -> Finding:
    """One usable ``_smtp._tls`` record (RFC 8460 §3); expected when MTA-STS is served."""
    ref = "RFC 8460 §3"
    if txt.unknown:
        return _unknown("tls-rpt", f"_smtp._tls.{domain}", txt, ref)
    records = _txt_starting(txt, "v=TLSRPTv1")
    fix = expected.line if expected is not None else ""
    if not records:
        if expected is None:
            return Finding("tls-rpt", OK, "not published (no reports of failed TLS)", "", ref)
        return Finding(
            "tls-rpt",
            WARNING,
            "no TLS-RPT record: senders cannot report failed TLS deliveries",
            fix,
            ref,
        )
    if len(records) > 1:
        return Finding(
            "tls-rpt",
            WARNING,
            f"{len(records)} TLS-RPT records: senders send no reports",
            f"keep one: {fix}" if fix else "keep one",
            ref,
        )
    uris, problem = mtasts.parse_tlsrpt_record(records[0])
    if problem:
        return Finding("tls-rpt", WARNING, f"the record is unusable: {problem}", fix, ref)
    return Finding("tls-rpt", OK, f"reports go to {', '.join(uris)}", "", ref)


def check_postmaster(domain: str, localpart: str, delivered: bool) -> Finding:
    """Every mail domain must accept mail for its postmaster (RFC 5321 §4.5.1); bounces,
    abuse reports and DMARC reports are sent there."""
    ref = "RFC 5321 §4.5.1"
    postmaster = f"{localpart}@{domain}"
    if delivered:
        return Finding("postmaster", OK, f"{postmaster} receives mail", "", ref)
    return Finding(
        "postmaster",
        WARNING,
        f"{postmaster} is neither a user nor an alias: mail to it is refused",
        f"roost alias {localpart} {domain} <an administrator's address>",
        ref,
    )


# -- the mail host -------------------------------------------------------------------------


def check_address(host: str, a: Looked, aaaa: Looked) -> Finding:
    """The MX host must have an address (RFC 5321 §5.1)."""
    ref = "RFC 5321 §5.1"
    if a.found or aaaa.found:
        return Finding("address", OK, ", ".join([*a.values, *aaaa.values]), "", ref)
    if a.unknown or aaaa.unknown:
        return _unknown("address", f"the addresses of {host}", a if a.unknown else aaaa, ref)
    return Finding(
        "address",
        ERROR,
        f"{host} has no A or AAAA record: no sender can reach it",
        f"{host}. 600 IN A <this host's public IPv4 address>",
        ref,
    )


def check_tlsa(
    host: str, tlsa: Looked, certificate: Certificate, expected: Sequence[Record]
) -> Finding:
    """A TLSA record at ``_25._tcp.<host>`` must match the chain port 25 serves: DANE-EE
    (3) the server's certificate, DANE-TA (2) one of its issuers (RFC 7672 §3.1.1); PKIX
    usages (0, 1) are unusable for SMTP (RFC 7672 §3.1.3). A stale record makes every DANE
    sender defer all mail. ``expected``: the records ``roost dns`` suggests
    (dnsrecords.tlsa_records), the fix."""
    ref = "RFC 7672 §3.1"
    name = f"_25._tcp.{host}"
    if tlsa.unknown:
        return _unknown("tlsa", name, tlsa, ref)
    if not tlsa.found:
        return Finding("tlsa", OK, f"no TLSA record at {name} (DANE not in use)", "", ref)
    if not certificate.chain:
        return Finding("tlsa", UNKNOWN, f"TLSA at {name}, but no certificate to compare", "", ref)
    leaf = (certificate.chain[0], certificate.spkis[0])
    issuers = list(zip(certificate.chain[1:], certificate.spkis[1:], strict=True))
    usable = [r for r in tlsa.values if int(r[0]) in (2, 3)]
    for usage, selector, matching, data in usable:
        candidates = [leaf] if int(usage) == 3 else issuers
        for cert, spki in candidates:
            if tlsa_digest(int(selector), int(matching), cert, spki) == str(data).lower():
                return Finding(
                    "tlsa",
                    OK,
                    f"{name} {usage} {selector} {matching} matches the certificate",
                    "",
                    ref,
                )
    fix = "\n".join(record.line for record in expected) or (
        f"remove the TLSA records at {name}: no record would keep matching this certificate "
        "(roost dns says why)"
    )
    return Finding(
        "tlsa",
        ERROR,
        f"no usable TLSA record at {name} matches the served certificate: DANE senders "
        "defer all mail to this host",
        fix,
        ref,
    )


def check_reverse(host: str, address: str, ptr: Looked, forward: dict[str, Looked]) -> Finding:
    """The address's PTR must exist and name a host that resolves back to it (forward-
    confirmed reverse DNS, RFC 8601 §3 "iprev"), and that name should be the one Postfix
    gives in HELO, HOSTNAMES[0] (RFC 5321 §4.1.1.1). ``forward``: each PTR name's
    addresses of the same family."""
    ref = "RFC 8601 §3"
    fix = f"ask the owner of {address} (the hosting provider) to set its PTR to {host}"
    if ptr.unknown:
        return _unknown("reverse-dns", f"the PTR of {address}", ptr, ref)
    if not ptr.found:
        return Finding(
            "reverse-dns",
            ERROR,
            f"{address} has no PTR record: many receivers refuse mail from it",
            fix,
            ref,
        )
    names = [str(n) for n in ptr.values]
    confirmed = [n for n in names if address in forward.get(n, Looked("missing")).values]
    if not confirmed:
        if any(forward.get(n, Looked("missing")).unknown for n in names):
            return Finding(
                "reverse-dns",
                UNKNOWN,
                f"could not look up the addresses of {', '.join(names)}",
                "",
                ref,
            )
        return Finding(
            "reverse-dns",
            ERROR,
            f"{address}'s PTR names {', '.join(names)}, which does not resolve back to "
            f"{address}: receivers that check reverse DNS refuse its mail",
            fix,
            ref,
        )
    if host not in confirmed:
        return Finding(
            "reverse-dns",
            WARNING,
            f"{address}'s PTR is {', '.join(confirmed)}, but Postfix says HELO {host} "
            "(HOSTNAMES[0]): receivers that compare them score the mail as suspect",
            f"{fix}, or make {confirmed[0]} the first of HOSTNAMES",
            "RFC 5321 §4.1.1.1",
        )
    return Finding("reverse-dns", OK, f"{address} is {host} both ways (HELO {host})", "", ref)


def check_certificate(
    hostnames: Sequence[str],
    certificate: Certificate | None,
    now: datetime.datetime,
) -> list[Finding]:
    """The served certificate (RFC 9525; RFC 5280 §6 for the chain): usable, trusted by
    the system's CAs, covering HOSTNAMES, not near its end. None: TLS_FLAVOR=notls."""
    ref = "RFC 9525 §6.3"
    if certificate is None:
        return [
            Finding(
                "certificate",
                WARNING,
                "TLS_FLAVOR=notls: mail and passwords travel in clear",
                "TLS_FLAVOR=cert with a real certificate, or TLS_FLAVOR=letsencrypt",
                "RFC 8314 §3",
            )
        ]
    if certificate.problem:
        return [Finding("certificate", ERROR, certificate.problem, "", ref)]
    out = []
    assert certificate.not_after is not None
    left = certificate.not_after - now
    if left <= datetime.timedelta(0):
        out.append(
            Finding(
                "certificate",
                ERROR,
                f"expired on {certificate.not_after:%Y-%m-%d}: clients and senders that "
                "check refuse it",
                "TLS_FLAVOR=letsencrypt, or put a renewed certificate in ROOT/certs",
                "RFC 5280 §6.1.3",
            )
        )
    elif left < datetime.timedelta(days=EXPIRY_WARNING_DAYS):
        out.append(
            Finding(
                "certificate",
                WARNING,
                f"ends on {certificate.not_after:%Y-%m-%d}, in {left.days} day(s)",
                "TLS_FLAVOR=letsencrypt, or put a renewed certificate in ROOT/certs",
                "RFC 5280 §6.1.3",
            )
        )
    if certificate.self_signed:
        out.append(
            Finding(
                "certificate",
                WARNING,
                "self-signed: mail clients warn, and senders that check certificates "
                "(MTA-STS, DANE) refuse it",
                "TLS_FLAVOR=letsencrypt, or a certificate from a public CA in ROOT/certs",
                "RFC 5280 §6",
            )
        )
    elif certificate.trust_error:
        out.append(
            Finding(
                "certificate",
                WARNING,
                f"not trusted by the system's CAs: {certificate.trust_error}",
                "put the whole chain in the certificate file (server first), or "
                "TLS_FLAVOR=letsencrypt",
                "RFC 5280 §6",
            )
        )
    uncovered = [h for h in hostnames if not covers(certificate.names, h)]
    if uncovered:
        out.append(
            Finding(
                "certificate",
                WARNING,
                f"does not cover {', '.join(uncovered)} from HOSTNAMES (it names "
                f"{', '.join(certificate.names) or 'nothing'}): clients using those names "
                "refuse it",
                "a certificate for all of HOSTNAMES (TLS_FLAVOR=letsencrypt makes one)",
                ref,
            )
        )
    if not out:
        out.append(
            Finding(
                "certificate",
                OK,
                f"trusted, covers HOSTNAMES, valid until {certificate.not_after:%Y-%m-%d}",
                "",
                ref,
            )
        )
    return out


def mx_certificate_problem(host: str, certificate: Certificate | None) -> str:
    """Why senders that verify (MTA-STS, RFC 8461 §4.2) would refuse the MX host's
    certificate; empty when they would not."""
    if certificate is None:
        return "TLS is off"
    if certificate.problem or certificate.trust_error:
        return certificate.problem or certificate.trust_error
    if not covers(certificate.names, host):
        return f"it does not name {host}"
    return ""


def check_ports(ports: Sequence[Port]) -> list[Finding]:
    """Which enabled ports answer on the mail host's addresses. Port 25 closed loses
    inbound mail (RFC 5321 §4.5.4.1: senders give up after days); others are warnings."""
    out = []
    for port in ports:
        where = f"{port.address} port {port.port}"
        if port.open:
            out.append(Finding("ports", OK, f"{where} answers", "", ""))
            continue
        severity = ERROR if port.port == 25 else WARNING
        out.append(
            Finding(
                "ports",
                severity,
                f"{where} does not answer ({port.reason})",
                f"is roost up running? open {port.port}/tcp in the firewall",
                "RFC 5321 §4.5.4.1" if port.port == 25 else "RFC 8314 §3",
            )
        )
    return out
