"""The ``dns_*`` fields of Mailu's DomainGet, from :mod:`roost.core.dnsrecords`.

The records themselves (formats, which services, what is left out and why) are the core's,
so the API, the admin pages and the zone file show the same lines. Mailu's fields hold the
domain's own records: ``dns_mx``, ``dns_spf``, and ``dns_autoconfig`` (the SRV and CNAME
records). DKIM, DMARC and TLSA records are absent until Roost has DKIM keys and ACME.
"""

from __future__ import annotations

from typing import Any

from roost.core.dnsrecords import records
from roost.settings import Settings

__all__ = ["dns_fields"]


def dns_fields(settings: Settings, domain: str) -> dict[str, Any]:
    own = [r for r in records(settings, domain) if r.domain == domain]
    fields: dict[str, Any] = {"dns_autoconfig": []}
    for record in own:
        if record.rtype == "MX":
            fields["dns_mx"] = record.line
        elif record.rtype == "TXT" and str(record.data[0]).startswith("v=spf1"):
            fields["dns_spf"] = record.line
        elif record.rtype in ("SRV", "CNAME"):
            fields["dns_autoconfig"].append(record.line)
    return fields
