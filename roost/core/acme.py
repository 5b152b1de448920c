"""ACME certificates (TLS_FLAVOR letsencrypt, mail-letsencrypt): the decisions, no I/O.

certbot does the protocol (RFC 8555); Roost decides which names to ask for, builds the
command line, reads which names the CA refused, and says what the administrator should
know. Everything here is pure so that it is tested in microseconds; roost.tls.acme runs it.

One name that cannot be validated must not cost the others their certificate (Mailu asks
for all HOSTNAMES at once, so a single failing name left every host without one): names
whose HTTP-01 self-check fails are left out of the request, and so are names the CA
reports as failed, for one more attempt; the full set is tried again at the next run.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CERT_NAME",
    "FULL_RUN_SECONDS",
    "RETRY_SECONDS",
    "AcmeState",
    "CertbotPaths",
    "certbot_command",
    "contact_address",
    "describe",
    "names_to_request",
    "refused_names",
    "wants_no_contact",
    "without_refused",
]

#: certbot's name for the one certificate lineage of a stack (``live/roost/``)
CERT_NAME = "roost"
#: after a run that got a certificate for every name: certbot decides about renewal twice
#: a day, as its own timer does (renewal starts 30 days before expiry)
FULL_RUN_SECONDS = 12 * 3600
#: after a run that left a name out or failed: try again in an hour (Let's Encrypt allows
#: 5 failed validations per account, host name and hour)
RETRY_SECONDS = 3600

# Domains that never receive mail (RFC 2606, RFC 6761): an ACME server refuses a contact
# there ("invalidContact"), so the account is registered without one.
_NO_MAIL_SUFFIXES = (".test", ".example", ".invalid", ".localhost", ".local")
_NO_MAIL_DOMAINS = ("example.com", "example.net", "example.org")
# certbot's report of each failed authorization ("  Domain: x", "  Type: y", "  Detail: z")
_REFUSED = re.compile(r"^\s*Domain: (\S+)\s*\n\s*Type:\s*(\S*)\s*\n\s*Detail:\s*(.*)$", re.M)
# a name the CA will not issue for at all (Boulder's rejectedIdentifier: no public suffix,
# a blocked name), which ends the order before any validation
_REJECTED = re.compile(
    r'Cannot issue for "([^"\s]+)": ([^;\n]*?)(?: \(and \d+ more problems?\b.*)?$', re.M
)


@dataclass(frozen=True)
class CertbotPaths:
    """certbot's own directories under ROOT, so that nothing lands in /etc/letsencrypt and
    two stacks on one host never share an account, a lock or a lineage."""

    config: Path
    work: Path
    logs: Path
    #: served by nginx at /.well-known/acme-challenge/ on port 80
    webroot: Path

    @property
    def live_cert(self) -> Path:
        return self.config / "live" / CERT_NAME / "fullchain.pem"

    @property
    def live_key(self) -> Path:
        return self.config / "live" / CERT_NAME / "privkey.pem"


def wants_no_contact(domain: str) -> bool:
    """Whether POSTMASTER@``domain`` cannot be a contact: a domain that never gets mail."""
    domain = domain.lower().rstrip(".")
    return domain in _NO_MAIL_DOMAINS or any(
        domain.endswith(suffix) or domain == suffix[1:] for suffix in _NO_MAIL_SUFFIXES
    )


def contact_address(postmaster: str, domain: str) -> str | None:
    """The account's contact, POSTMASTER@DOMAIN as in Mailu; None where it cannot be one."""
    return None if wants_no_contact(domain) else f"{postmaster}@{domain}"


def certbot_command(
    paths: CertbotPaths,
    names: Sequence[str],
    server: str,
    contact: str | None,
    force: bool = False,
) -> list[str]:
    """``certbot certonly`` for ``names`` with the webroot authenticator.

    ``--keep-until-expiring`` lets certbot decide: nothing happens until renewal is due
    (30 days before expiry), unless the names changed, which makes it issue at once.
    ``--force-renewal`` issues now whatever the dates say.
    """
    argv = [
        "certbot",
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "--config-dir",
        str(paths.config),
        "--work-dir",
        str(paths.work),
        "--logs-dir",
        str(paths.logs),
        "--max-log-backups",
        "30",
        "--server",
        server,
        "--cert-name",
        CERT_NAME,
        "--authenticator",
        "webroot",
        "--webroot-path",
        str(paths.webroot),
        "--preferred-challenges",
        "http",
        "--key-type",
        "ecdsa",
        "--elliptic-curve",
        "secp256r1",
        "--force-renewal" if force else "--keep-until-expiring",
    ]
    if contact:
        argv += ["--email", contact, "--no-eff-email"]
    else:
        argv.append("--register-unsafely-without-email")
    for name in names:
        argv += ["--domain", name]
    return argv


def names_to_request(hostnames: Sequence[str], failed: Mapping[str, str]) -> list[str]:
    """HOSTNAMES without those whose self-check ``failed``, in their order.

    When every name failed the self-check, all are asked for: the check runs from this
    host, and a host behind NAT may not reach its own public address while the CA can.
    """
    passing = [name for name in hostnames if name not in failed]
    return passing or list(hostnames)


def refused_names(output: str) -> dict[str, str]:
    """The names certbot reports the CA would not validate or issue for, with the reasons."""
    refused = {
        match[1].lower(): f"{match[2]}: {match[3].strip()}" if match[2] else match[3].strip()
        for match in _REFUSED.finditer(output)
    }
    for match in _REJECTED.finditer(output):
        refused.setdefault(match[1].lower(), f"rejected: {match[2].strip()}")
    return refused


def without_refused(names: Sequence[str], output: str) -> tuple[list[str], dict[str, str]]:
    """After a failed request for ``names``: the names to ask for again, and those the CA
    refused. No name to ask again when the CA refused none of them (the failure was not
    about a name) or all of them."""
    refused = {name: why for name, why in refused_names(output).items() if name in names}
    remaining = [name for name in names if name not in refused]
    return (remaining if refused and remaining else []), refused


@dataclass(frozen=True)
class AcmeState:
    """What the last ACME run did, kept in ROOT/certs/letsencrypt/status.json for
    ``roost status``. Times are seconds since the epoch."""

    #: the names of the certificate certbot last obtained (empty: none yet)
    names: tuple[str, ...] = ()
    #: HOSTNAMES left out of it, each with the reason
    left_out: Mapping[str, str] = field(default_factory=dict)
    #: why the last run got no certificate at all, if it did not
    error: str | None = None
    last_run: float | None = None
    next_run: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "left_out": dict(self.left_out),
            "error": self.error,
            "last_run": self.last_run,
            "next_run": self.next_run,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AcmeState:
        left_out = data.get("left_out") or {}
        return cls(
            names=tuple(str(name) for name in data.get("names") or ()),
            left_out={str(k): str(v) for k, v in left_out.items()},
            error=str(data["error"]) if data.get("error") else None,
            last_run=_number(data.get("last_run")),
            next_run=_number(data.get("next_run")),
        )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def describe(
    flavor: str, self_signed: bool, names: Sequence[str], not_after: str, state: AcmeState | None
) -> list[str]:
    """The lines ``roost status`` shows about the served certificate.

    ``names`` and ``not_after`` are the served certificate's; ``state`` is the last ACME
    run's (None when there was none yet, or the flavor has no ACME).
    """
    acme = flavor in ("letsencrypt", "mail-letsencrypt")
    if self_signed and acme:
        lines = [f"certificate: self-signed until the ACME server issues one (TLS_FLAVOR={flavor})"]
    elif self_signed:
        lines = [f"certificate: self-signed (TLS_FLAVOR={flavor}: put your own in its place)"]
    else:
        source = "from the ACME server" if acme else "the administrator's"
        lines = [f"certificate: {source}, for {', '.join(names)}, valid until {not_after}"]
    if not acme:
        return lines
    if state is None:
        return [*lines, "certificate: certbot has not run yet (it runs once nginx answers)"]
    if state.error:
        lines.append(f"certificate: the last ACME run got none: {state.error}")
    lines += [f"certificate: {name} left out: {why}" for name, why in state.left_out.items()]
    if state.next_run is not None:
        again = "all HOSTNAMES tried again" if state.error or state.left_out else "next check"
        lines.append(f"certificate: {again} at {_utc(state.next_run)}")
    return lines


def _utc(seconds: float) -> str:
    return f"{datetime.datetime.fromtimestamp(seconds, datetime.UTC):%Y-%m-%d %H:%M} UTC"
