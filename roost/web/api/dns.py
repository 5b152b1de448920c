"""The DNS records the API shows for a domain (``dns_*`` of Mailu's DomainGet).

Formats as Mailu's admin writes them (core/admin/mailu/models.py, Domain.dns_*): MX and SPF
(RFC 7208) for the first of HOSTNAMES, SRV records for client setup (RFC 6186, RFC 8314)
and the autoconfig/autodiscover names. A service whose port is not open is published as
"not available here" (RFC 2782's target ``.``), where Mailu always claims 465 and 993.
DKIM and DMARC records need a DKIM key, which Roost does not make yet: they are absent.
"""

from __future__ import annotations

from roost.settings import Settings

__all__ = ["autoconfig_records", "mx_record", "spf_record"]

#: (service, port, priority, needs TLS); RFC 8314 prefers the implicit-TLS ports.
_SERVICES = (
    ("imap", 143, 20, False),
    ("pop3", 110, 20, False),
    ("submission", 587, 20, False),
    ("autodiscover", 443, 10, True),
    ("submissions", 465, 10, True),
    ("imaps", 993, 10, True),
    ("pop3s", 995, 10, True),
)


def mx_record(settings: Settings, domain: str) -> str:
    return f"{domain}. 600 IN MX 10 {settings.hostname}."


def spf_record(settings: Settings, domain: str) -> str:
    return f'{domain}. 600 IN TXT "v=spf1 mx a:{settings.hostname} ~all"'


def autoconfig_records(settings: Settings, domain: str) -> list[str]:
    records = []
    for service, port, priority, tls in _SERVICES:
        if tls and not settings.tls:
            continue
        name = f"_{service}._tcp.{domain}. 600 IN SRV"
        if settings.port_enabled(port):
            records.append(f"{name} {priority} 1 {port} {settings.hostname}.")
        else:
            records.append(f"{name} 0 0 0 .")
    records.append(f"autoconfig.{domain}. 600 IN CNAME {settings.hostname}.")
    records.append(f"autodiscover.{domain}. 600 IN CNAME {settings.hostname}.")
    return records
