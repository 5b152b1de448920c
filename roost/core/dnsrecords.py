"""The DNS records a domain publishes for mail to reach Roost and for clients to find it.

Pure functions of the settings, the domain's name and its alternative names: no I/O, so
the admin UI, the API and ``roost dns`` show the same records and tests run in
microseconds. Names are lower-case punycode (IDNA A-labels), fully qualified with a trailing
dot, as Mailu's admin shows them, so they can be pasted into a zone file as they are.

What is published, per domain (and for each alternative name: MX, SPF, DKIM, DMARC):

DKIM, DMARC and the report permission only with a DKIM key (``dkim``: its public half), as
Mailu shows them: ``p=reject`` without a signature would make receivers refuse every
message a third party forwards, since forwarding breaks SPF and nothing else would align.

- MX (RFC 5321 §5.1): ``<d>. 600 IN MX 10 <HOSTNAMES[0]>.``
- SPF (RFC 7208): ``"v=spf1 mx a:<host> ~all"``: the MX host sends.
- DKIM (RFC 6376 §3.6.1): ``<DKIM_SELECTOR>._domainkey.<d>. TXT "v=DKIM1; k=rsa; p=..."``;
  an alternative publishes its domain's key under its own name, as it signs with it.
- DMARC (RFC 7489 §6.3): ``p=reject`` with strict alignment, and report addresses
  ``rua``/``ruf`` at DOMAIN when DMARC_RUA/DMARC_RUF name local parts. A domain other than
  DOMAIN whose reports go to DOMAIN also needs DOMAIN's permission (RFC 7489 §7.1):
  ``<d>._report._dmarc.<DOMAIN>. TXT "v=DMARC1;"``.
- Service records (RFC 6186, with RFC 8314 §5.1's preference of implicit TLS): one for
  each of IMAP, POP3 and submission, with and without TLS, and Outlook's autodiscover.
  A service whose port is off in PORTS (or a TLS port under TLS_FLAVOR=notls) gets the
  target ``.``, RFC 6186 §4's "not provided here", so that clients stop looking.
- ``autoconfig`` and ``autodiscover`` CNAMEs to the host, where Thunderbird and Outlook
  look for their configuration documents.
- With WEBDAV on, CalDAV and CardDAV (RFC 6764): ``_caldavs._tcp`` and ``_carddavs._tcp``
  SRV records to the host's port 443 (``_caldav``/``_carddav`` and port 80 under
  TLS_FLAVOR=notls) and a TXT record beside each with the context path,
  ``"path=/webdav/"``, so that a device given only the address finds the server.
- TLSA (DANE, RFC 7672) at ``_25._tcp.<HOSTNAMES[0]>`` (:func:`tlsa_records`, shown with the
  domain as Mailu does): under the letsencrypt flavors with Let's Encrypt's directory,
  Mailu's two DANE-TA(2) records of ISRG Root X1 and X2 (``2 1 1``, TTL 86400); under
  TLS_FLAVOR cert and mail with a certificate that is not self-signed, DANE-EE(3) of the
  served key (``3 1 1``, RFC 7671 §5.1), which must be republished before the key changes
  (RFC 7671 §8.1). See :mod:`roost.core.dane`.
- MTA-STS (RFC 8461) and TLS reporting (RFC 8460), for a domain or alternative whose
  ``mta-sts.<d>`` is in HOSTNAMES (:mod:`roost.core.mtasts`): ``_mta-sts.<d>. TXT
  "v=STSv1; id=..."`` (the id follows the policy nginx serves), ``mta-sts.<d>. CNAME
  <HOSTNAMES[0]>.`` and ``_smtp._tls.<d>. TXT "v=TLSRPTv1; rua=mailto:..."``.

Left out, and said so by :func:`omitted`: DKIM and DMARC while the domain has no key, and TLSA
where no record would keep matching (a self-signed or unreadable certificate, another ACME
CA than Let's Encrypt, no TLS).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from roost.core import dane, mtasts
from roost.core import dkim as dkimkey
from roost.core.address import DOMAIN_MAX, domain_to_ascii
from roost.core.dane import ServedKey
from roost.settings import Settings
from roost.settings.model import LETSENCRYPT_DIRECTORY

__all__ = [
    "TTL",
    "Record",
    "Service",
    "dmarc_text",
    "omitted",
    "records",
    "services",
    "spf_text",
    "tlsa_records",
    "zone_file",
]

#: Mailu's TTL for every record it shows (seconds).
TTL = 600
#: Mailu's TTL of the TLSA records of Let's Encrypt's roots, which never change.
TLSA_ROOT_TTL = 86400
#: A DANE-EE record follows the key: a short TTL shortens the wait between publishing the
#: next key's record and using the key (RFC 7671 §8.1).
TLSA_KEY_TTL = 3600
#: RFC 1035 §3.3.14: one character-string holds at most 255 octets; Mailu cuts at 250.
TXT_CHUNK = 250


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record: owner name, TTL, type and data in master-file presentation.

    ``data`` holds the fields a live answer is compared with: (preference, exchange) for
    MX, (text,) for TXT, (priority, weight, port, target) for SRV, (target,) for CNAME,
    (usage, selector, matching type, hex data) for TLSA.
    ``domain`` is the domain or alternative the record is for; ``purpose`` says why it is
    there, for people.
    """

    name: str
    rtype: str
    data: tuple[str | int, ...]
    domain: str
    purpose: str
    ttl: int = TTL

    @property
    def value(self) -> str:
        """The record's data as RFC 1035 §5.1 writes it."""
        if self.rtype == "TXT":
            return txt_value(str(self.data[0]))
        return " ".join(str(part) for part in self.data)

    @property
    def line(self) -> str:
        """One master-file line: ``name ttl IN type data``."""
        return f"{self.name} {self.ttl} IN {self.rtype} {self.value}"

    @property
    def unsplit_line(self) -> str:
        """The line with a TXT record's text as one quoted string, however long: how
        Mailu's API shows it (``dns_dkim``); a zone file needs :attr:`line`."""
        if self.rtype != "TXT":
            return self.line
        text = str(self.data[0]).replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name} {self.ttl} IN TXT "{text}"'


@dataclass(frozen=True, slots=True)
class Service:
    """A mail service a client can be pointed at (RFC 6186 and RFC 8314 names)."""

    srv: str  # the SRV service label, without the underscore
    protocol: str  # imap, pop3, smtp, https
    port: int
    implicit_tls: bool


#: In RFC 6186's order; RFC 8314 §5.1: implicit TLS is preferred (lower priority value).
SERVICES: tuple[Service, ...] = (
    Service("imap", "imap", 143, False),
    Service("pop3", "pop3", 110, False),
    Service("submission", "smtp", 587, False),
    Service("autodiscover", "https", 443, True),
    Service("submissions", "smtp", 465, True),
    Service("imaps", "imap", 993, True),
    Service("pop3s", "pop3", 995, True),
)


def services(settings: Settings) -> list[Service]:
    """The services that are on: their port in PORTS, and a TLS port only with TLS."""
    return [s for s in SERVICES if settings.port_enabled(s.port)]


def fqdn(name: str) -> str:
    return f"{name}."


def ascii_name(name: str) -> str:
    """Lower-case punycode without the trailing dot (raises core.address.AddressError)."""
    return domain_to_ascii(name.strip(), max_length=DOMAIN_MAX)


def txt_value(text: str) -> str:
    """A TXT record's text as quoted character-strings of at most 250 octets each.

    RFC 1035 §5.1: a quote and a backslash are escaped with a backslash, any other octet
    outside printable ASCII as ``\\DDD``.
    """
    raw = text.encode("utf-8")
    chunks = [raw[i : i + TXT_CHUNK] for i in range(0, len(raw), TXT_CHUNK)] or [b""]
    return " ".join(f'"{_escape(chunk)}"' for chunk in chunks)


def _escape(chunk: bytes) -> str:
    out = []
    for octet in chunk:
        char = chr(octet)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= octet < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{octet:03d}")
    return "".join(out)


def spf_text(settings: Settings) -> str:
    """RFC 7208: the MX hosts and the first host name send; anything else soft-fails."""
    return f"v=spf1 mx a:{settings.hostname} ~all"


def _report_localparts(settings: Settings) -> tuple[str, str]:
    """DMARC_RUA and DMARC_RUF: local parts at DOMAIN; Mailu's default is neither."""
    return settings.DMARC_RUA, settings.DMARC_RUF


def _mailto(localpart: str, settings: Settings) -> str:
    # RFC 7489 §6.4: "," and "!" separate URIs and sizes, ";" ends the tag: escape them.
    return f"mailto:{quote(localpart, safe='.+-_=~')}@{settings.DOMAIN}"


def dmarc_text(settings: Settings) -> str:
    """RFC 7489: reject mail that fails, strict alignment, reports to DOMAIN if named."""
    rua, ruf = _report_localparts(settings)
    text = "v=DMARC1; p=reject;"
    if rua:
        text += f" rua={_mailto(rua, settings)};"
    if ruf:
        text += f" ruf={_mailto(ruf, settings)};"
    return text + " adkim=s; aspf=s"


#: (selector, base64 public key) of each DKIM key a domain publishes.
DkimKeys = Sequence[tuple[str, str]]


def _keys(settings: Settings, dkim: str | None, dkim_keys: DkimKeys) -> DkimKeys:
    if dkim_keys:
        return dkim_keys
    return [] if dkim is None else [(settings.DKIM_SELECTOR, dkim)]


def _mail_records(settings: Settings, name: str, keys: DkimKeys) -> list[Record]:
    """MX, SPF, and with a DKIM key (its public half) DKIM, DMARC and the report
    permission: for a domain and each alternative."""
    host = fqdn(settings.hostname)
    out = [
        Record(fqdn(name), "MX", (10, host), name, "mail for the domain goes to this host"),
        Record(fqdn(name), "TXT", (spf_text(settings),), name, "SPF: who may send"),
    ]
    if not keys:
        return out
    out += [
        Record(
            fqdn(dkimkey.record_name(selector, name)),
            "TXT",
            (dkimkey.record_text(public),),
            name,
            "DKIM: the key receivers check this host's signatures with"
            if index == 0
            else "DKIM: the other key of a rotation in progress (keep both until it ends)",
        )
        for index, (selector, public) in enumerate(keys)
    ]
    out += [
        Record(
            fqdn(f"_dmarc.{name}"),
            "TXT",
            (dmarc_text(settings),),
            name,
            "DMARC: what receivers do with mail that fails SPF and DKIM",
        ),
    ]
    rua, ruf = _report_localparts(settings)
    if (rua or ruf) and name != settings.DOMAIN:
        out.append(
            Record(
                fqdn(f"{name}._report._dmarc.{settings.DOMAIN}"),
                "TXT",
                ("v=DMARC1;",),
                name,
                f"DMARC: {settings.DOMAIN} accepts this domain's reports (in its own zone)",
            )
        )
    return out


def _mta_sts_records(settings: Settings, name: str) -> list[Record]:
    """MTA-STS's TXT and policy host, and TLS-RPT's TXT, when ``mta-sts.<name>`` is ours."""
    if not mtasts.domain_enabled(settings, name):
        return []
    host = mtasts.policy_host(name)
    return [
        Record(
            fqdn(f"_mta-sts.{name}"),
            "TXT",
            (mtasts.sts_record_text(settings),),
            name,
            f"MTA-STS: senders fetch the policy (mode {settings.MTA_STS_MODE}) from {host}",
        ),
        Record(
            fqdn(host),
            "CNAME",
            (fqdn(settings.hostname),),
            name,
            "MTA-STS: the host that serves the policy over HTTPS",
        ),
        Record(
            fqdn(f"_smtp._tls.{name}"),
            "TXT",
            (mtasts.tlsrpt_record_text(settings),),
            name,
            "TLS-RPT: where senders report failed TLS deliveries",
        ),
    ]


def _letsencrypt(settings: Settings) -> bool:
    """Whether certbot asks Let's Encrypt itself (not its staging or another ACME CA, whose
    roots are others)."""
    return settings.acme and settings.ACME_SERVER.rstrip("/") == LETSENCRYPT_DIRECTORY


def tlsa_records(
    settings: Settings, served: ServedKey | None, domain: str | None = None
) -> list[Record]:
    """The TLSA records of port 25 at ``_25._tcp.<HOSTNAMES[0]>.`` (see the module's
    description and :mod:`roost.core.dane`); none where no record would keep matching.

    ``served``: the certificate port 25 serves (needed under TLS_FLAVOR cert and mail
    only). ``domain``: the domain the records are shown with (default: the host).
    """
    owner = fqdn(f"_25._tcp.{settings.hostname}")
    shown = domain or settings.hostname
    if _letsencrypt(settings):
        return [
            Record(
                owner,
                "TLSA",
                (dane.DANE_TA, dane.SPKI, dane.SHA256, digest),
                shown,
                f"DANE: port 25's certificates chain to {root} (Let's Encrypt's root)",
                TLSA_ROOT_TTL,
            )
            for root, digest in dane.ISRG_ROOTS.items()
        ]
    if not settings.tls or settings.acme or served is None or served.self_signed:
        return []
    digest = dane.tlsa_digest(dane.SPKI, dane.SHA256, b"", served.spki)
    return [
        Record(
            owner,
            "TLSA",
            (dane.DANE_EE, dane.SPKI, dane.SHA256, digest),
            shown,
            "DANE: the key port 25 serves; publish the next key's record before changing "
            "it (RFC 7671 §8.1)",
            TLSA_KEY_TTL,
        )
    ]


def _tlsa_omitted(settings: Settings, served: ServedKey | None) -> str | None:
    """Why :func:`tlsa_records` suggests none, or None when it does."""
    host = settings.hostname
    if not settings.tls:
        return "TLSA (DANE): TLS_FLAVOR=notls, port 25 offers no STARTTLS"
    if settings.acme and not _letsencrypt(settings):
        return (
            f"TLSA (DANE): ACME_SERVER is not Let's Encrypt's; publish _25._tcp.{host}. "
            "IN TLSA 2 1 1 <SHA-256 of your ACME CA's root public key> (RFC 7671 §5.2)"
        )
    if settings.acme:
        return None
    if served is None:
        return (
            "TLSA (DANE): the certificate port 25 serves is missing or unreadable "
            "(`roost up` makes a self-signed one first; `roost status` says more)"
        )
    if served.self_signed:
        return (
            "TLSA (DANE): the certificate is Roost's self-signed placeholder; once yours "
            "is in ROOT/certs, a 3 1 1 record of its key is suggested here"
        )
    return None


def _service_records(settings: Settings, name: str) -> list[Record]:
    """RFC 6186 SRV records and the autoconfig/autodiscover names."""
    host = fqdn(settings.hostname)
    out = []
    for service in SERVICES:
        owner = fqdn(f"_{service.srv}._tcp.{name}")
        if settings.port_enabled(service.port):
            priority = 10 if service.implicit_tls else 20
            data: tuple[str | int, ...] = (priority, 1, service.port, host)
            purpose = f"{service.srv} on port {service.port}"
        else:
            data = (0, 0, 0, ".")
            purpose = f"{service.srv}: not provided (port {service.port} is off)"
        out.append(Record(owner, "SRV", data, name, purpose))
    out += _dav_records(settings, name)
    for label, client in (("autoconfig", "Thunderbird"), ("autodiscover", "Outlook")):
        owner = f"{label}.{name}"
        if owner != settings.hostname:  # a CNAME to itself would be a loop
            out.append(
                Record(fqdn(owner), "CNAME", (host,), name, f"{client} finds its settings here")
            )
    return out


def _dav_records(settings: Settings, name: str) -> list[Record]:
    """RFC 6764's SRV and TXT records for CalDAV and CardDAV (WEBDAV on, its port on)."""
    path = settings.webdav_path
    port, suffix = (443, "s") if settings.tls else (80, "")
    if not path or not settings.port_enabled(port):
        return []
    out = []
    for kind, what in (("caldav", "calendars"), ("carddav", "contacts")):
        owner = fqdn(f"_{kind}{suffix}._tcp.{name}")
        target = (10, 1, port, fqdn(settings.hostname))
        out.append(Record(owner, "SRV", target, name, f"{kind}: {what} on port {port}"))
        out.append(Record(owner, "TXT", (f"path={path}/",), name, f"{kind}: the server's path"))
    return out


def records(
    settings: Settings,
    domain: str,
    alternatives: Iterable[str] = (),
    *,
    dkim: str | None = None,
    dkim_keys: DkimKeys = (),
    served: ServedKey | None = None,
) -> list[Record]:
    """Every record to publish for ``domain`` and its alternative names, in zone order.

    ``dkim``: the public half (base64) of the domain's DKIM key, if it has one (then DKIM
    and DMARC are published too, for the alternatives as well); ``dkim_keys`` instead:
    (selector, public key) of each key, the one in use first (a rotation has two).
    ``served``: the certificate port 25 serves, for the TLSA record under TLS_FLAVOR cert
    and mail (roost.tls.served_key). Names may be given in Unicode or punycode; raises
    core.address.AddressError for a name that is not a domain.
    """
    name = ascii_name(domain)
    keys = _keys(settings, dkim, dkim_keys)
    out = _mail_records(settings, name, keys)
    out += tlsa_records(settings, served, name)
    out += _mta_sts_records(settings, name)
    out += _service_records(settings, name)
    for alternative in sorted({ascii_name(a) for a in alternatives} - {name}):
        out += _mail_records(settings, alternative, keys)
        out += _mta_sts_records(settings, alternative)
    return out


def omitted(
    settings: Settings,
    domain: str,
    *,
    dkim: str | None = None,
    dkim_keys: DkimKeys = (),
    served: ServedKey | None = None,
) -> list[str]:
    """The records left out of :func:`records`, each with the reason (and how to add it)."""
    out = []
    if not _keys(settings, dkim, dkim_keys):
        out += [
            f"DKIM: {ascii_name(domain)} has no DKIM key yet, so its mail is not signed "
            f"(make one with: roost dkim generate {ascii_name(domain)})",
            "DMARC: published with the DKIM key; p=reject without a signature would refuse "
            "mail that others forward",
        ]
    if not mtasts.domain_enabled(settings, ascii_name(domain)):
        host = mtasts.policy_host(ascii_name(domain))
        out.append(
            f"MTA-STS and TLS-RPT: add {host} to HOSTNAMES (with HTTPS on) to serve a policy"
        )
    tlsa = _tlsa_omitted(settings, served)
    if tlsa:
        out.append(tlsa)
    return out


def zone_file(
    settings: Settings,
    domain: str,
    alternatives: Sequence[str] = (),
    *,
    dkim: str | None = None,
    dkim_keys: DkimKeys = (),
    served: ServedKey | None = None,
) -> str:
    """The records as RFC 1035 master-file lines, ready to paste into the zone; ends in a newline.

    Comment lines (``;``) name the domain and what is left out and why. A DKIM record's
    text is cut into character-strings of 250 octets, as Mailu's zone file does.
    """
    name = ascii_name(domain)
    lines = [f"; Mail records for {name}, from Roost"]
    keys = _keys(settings, dkim, dkim_keys)
    left_out = omitted(settings, name, dkim_keys=keys, served=served)
    lines += [f"; left out: {reason}" for reason in left_out]
    listed = records(settings, name, alternatives, dkim_keys=keys, served=served)
    lines += [record.line for record in listed]
    return "\n".join(lines) + "\n"
