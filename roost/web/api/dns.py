"""The ``dns_*`` fields of Mailu's DomainGet, from :mod:`roost.core.dnsrecords`.

The records themselves (formats, which services, what is left out and why) are the core's,
so the API, the admin pages and the zone file show the same lines. Mailu's fields hold the
domain's own records: ``dns_mx``, ``dns_spf``, ``dns_autoconfig`` (the SRV records, the
autoconfig CNAMEs and, with WEBDAV, the CalDAV/CardDAV path records) and, when the domain
has a DKIM key, ``dns_dkim``, ``dns_dmarc`` and (for a domain other than DOMAIN whose
reports go there) ``dns_dmarc_report``, and ``dns_tlsa`` when a TLSA record is suggested
for port 25. TXT texts are one quoted string however long, as Mailu's API shows them; a
zone file cuts them (``roost dns --zone``). MTA-STS and TLS-RPT records have no field in
Mailu's API (``roost dns`` and the admin pages show them).
"""

from __future__ import annotations

import logging
from typing import Any

from roost import tls
from roost.core.dnsrecords import records
from roost.layout import Layout
from roost.settings import Settings
from roost.store.dkimkeys import DkimKeyError, DkimKeys

__all__ = ["dns_fields"]

log = logging.getLogger("roost.web.api")


def dns_fields(settings: Settings, domain: str) -> dict[str, Any]:
    try:
        public = DkimKeys(settings).public(domain)
    except DkimKeyError as exc:
        log.error("DKIM key of %s: %s", domain, exc)
        public = None
    served = tls.served_key(Layout(settings))
    own = [r for r in records(settings, domain, dkim=public, served=served) if r.domain == domain]
    fields: dict[str, Any] = {"dns_autoconfig": []}
    for record in own:
        text = str(record.data[0])
        if record.rtype == "MX":
            fields["dns_mx"] = record.line
        elif record.rtype == "TXT" and text.startswith("v=spf1"):
            fields["dns_spf"] = record.line
        elif record.rtype == "TXT" and text.startswith("v=DKIM1"):
            fields["dns_dkim"] = record.unsplit_line
        elif record.rtype == "TXT" and record.name.startswith("_dmarc."):
            fields["dns_dmarc"] = record.unsplit_line
        elif record.rtype == "TXT" and "._report._dmarc." in record.name:
            fields["dns_dmarc_report"] = record.unsplit_line
        elif record.rtype == "TLSA":
            fields.setdefault("dns_tlsa", []).append(record.line)
        elif record.rtype == "SRV" or record.name.startswith(
            ("autoconfig.", "autodiscover.", "_caldav", "_carddav")
        ):
            fields["dns_autoconfig"].append(record.line)
    return fields
