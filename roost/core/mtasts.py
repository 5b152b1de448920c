"""Inbound MTA-STS (RFC 8461) and TLS reporting (RFC 8460): what Roost serves and publishes.

Pure functions of the settings. A domain takes part when ``mta-sts.<domain>`` is one of
HOSTNAMES and HTTPS is on (port 443 with TLS): RFC 8461 §3.3 has senders fetch the policy
only from ``https://mta-sts.<domain>/.well-known/mta-sts.txt``, with a certificate valid
for that name, so the name must be one the certificate covers, and HOSTNAMES is that list.

Every such domain gets the same policy: its only MX host is HOSTNAMES[0] (the MX record
:mod:`roost.core.dnsrecords` publishes). The policy's ``id`` (RFC 8461 §3.1) is a digest
of the policy text, so it changes exactly when the policy does (a new mode, max_age or
host) and senders fetch the new one. The parsers here read what others publish, for
``roost doctor``: they follow the RFCs' grammars and say what is wrong in words.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from roost.settings import Settings

__all__ = [
    "POLICY_PATH",
    "Policy",
    "domain_enabled",
    "mx_matches",
    "parse_policy",
    "parse_sts_record",
    "parse_tlsrpt_record",
    "policy_host",
    "policy_hosts",
    "policy_id",
    "policy_text",
    "sts_record_text",
    "tlsrpt_record_text",
]

#: RFC 8461 §3.3: the one place a policy is served.
POLICY_PATH = "/.well-known/mta-sts.txt"
#: RFC 8461 §3.1: sts-id = 1*32(ALPHA / DIGIT); 20 hex digits of a SHA-256 are plenty.
ID_LENGTH = 20
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
#: RFC 8461 §3.2: max_age is at most 31557600 seconds.
MAX_AGE_LIMIT = 31557600


def policy_host(domain: str) -> str:
    """The host that serves ``domain``'s policy (RFC 8461 §3.3)."""
    return f"mta-sts.{domain.lower().rstrip('.')}"


def domain_enabled(settings: Settings, domain: str) -> bool:
    """Whether Roost serves and publishes MTA-STS for ``domain`` (punycode, any case)."""
    hosts = {h.lower() for h in settings.HOSTNAMES}
    return settings.port_enabled(443) and policy_host(domain) in hosts


def policy_hosts(settings: Settings) -> list[str]:
    """The ``mta-sts.*`` names of HOSTNAMES, where the policy is served (none without HTTPS)."""
    if not settings.port_enabled(443):
        return []
    return [h.lower() for h in settings.HOSTNAMES if h.lower().startswith("mta-sts.")]


def policy_text(settings: Settings) -> str:
    """The policy file (RFC 8461 §3.2): one ``key: value`` line each, ending in CRLF."""
    lines = [
        "version: STSv1",
        f"mode: {settings.MTA_STS_MODE}",
        f"mx: {settings.hostname.lower()}",
        f"max_age: {settings.MTA_STS_MAX_AGE}",
    ]
    return "".join(f"{line}\r\n" for line in lines)


def policy_id(text: str) -> str:
    """The ``id`` for a policy text: it changes whenever the text changes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:ID_LENGTH]


def sts_record_text(settings: Settings) -> str:
    """The ``_mta-sts.<domain>`` TXT text (RFC 8461 §3.1)."""
    return f"v=STSv1; id={policy_id(policy_text(settings))}"


def tlsrpt_record_text(settings: Settings) -> str:
    """The ``_smtp._tls.<domain>`` TXT text (RFC 8460 §3): reports to TLSRPT_RUA at
    DOMAIN, or to the postmaster."""
    local = settings.TLSRPT_RUA or settings.POSTMASTER
    return f"v=TLSRPTv1; rua=mailto:{local}@{settings.DOMAIN}"


# -- reading what is published ----------------------------------------------------------------


def _tags(text: str) -> list[tuple[str, str]]:
    """``k=v`` fields separated by ``;`` (RFC 8461 §3.1, RFC 8460 §3), blanks trimmed."""
    out = []
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        out.append((key.strip(), value.strip() if sep else ""))
    return out


def parse_sts_record(text: str) -> tuple[str | None, str]:
    """(id, problem) of one ``_mta-sts`` TXT text; id None when the record is unusable.

    RFC 8461 §3.1: ``v=STSv1`` first, then ``id`` of 1 to 32 letters and digits.
    """
    fields = _tags(text)
    if not fields or fields[0] != ("v", "STSv1"):
        return None, "it does not start with v=STSv1"
    ids = [value for key, value in fields if key == "id"]
    if len(ids) != 1:
        return None, "it needs exactly one id=" if ids else "it has no id="
    if not _ID.fullmatch(ids[0]):
        return None, f"id={ids[0]} is not 1 to 32 letters and digits"
    return ids[0], ""


def parse_tlsrpt_record(text: str) -> tuple[tuple[str, ...], str]:
    """(report URIs, problem) of one ``_smtp._tls`` TXT text (RFC 8460 §3).

    ``v=TLSRPTv1`` first; ``rua`` is one or more ``mailto:`` or ``https:`` URIs,
    separated by commas.
    """
    fields = _tags(text)
    if not fields or fields[0] != ("v", "TLSRPTv1"):
        return (), "it does not start with v=TLSRPTv1"
    ruas = [value for key, value in fields if key == "rua"]
    if len(ruas) != 1:
        return (), "it needs exactly one rua=" if ruas else "it has no rua="
    uris = tuple(uri.strip() for uri in ruas[0].split(","))
    for uri in uris:
        scheme, _, rest = uri.partition(":")
        if scheme.lower() not in ("mailto", "https") or not rest:
            return (), f"rua={ruas[0]}: {uri or 'an empty URI'} is not a mailto: or https: URI"
    return uris, ""


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy file as read (RFC 8461 §3.2)."""

    mode: str
    mx: tuple[str, ...]
    max_age: int


def parse_policy(text: str) -> tuple[Policy | None, str]:
    """(policy, problem): the policy, or None with what makes it unusable.

    Lines end in CRLF or LF; keys are ``version`` (``STSv1``), ``mode`` (enforce, testing,
    none), ``max_age`` (0 to 31557600) and ``mx`` (one or more; none only with mode none).
    Unknown keys are ignored, as senders ignore them.
    """
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            return None, f"the line {line.strip()!r} is not key: value"
        values.setdefault(key.strip(), []).append(value.strip())
    if values.get("version") != ["STSv1"]:
        return None, "it needs the line version: STSv1"
    mode = values.get("mode", [""])
    if len(mode) != 1 or mode[0] not in ("enforce", "testing", "none"):
        return None, "it needs one line mode: enforce, testing or none"
    age = values.get("max_age", [""])
    if len(age) != 1 or not age[0].isdigit() or int(age[0]) > MAX_AGE_LIMIT:
        return None, f"it needs one line max_age: with 0 to {MAX_AGE_LIMIT} seconds"
    mx = tuple(m.lower().rstrip(".") for m in values.get("mx", []))
    if not mx and mode[0] != "none":
        return None, "it lists no mx: host"
    return Policy(mode[0], mx, int(age[0])), ""


def mx_matches(pattern: str, host: str) -> bool:
    """Whether a policy's ``mx`` pattern names ``host`` (RFC 8461 §4.1): exactly, or a
    ``*.`` wildcard standing for one leftmost label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == host
