"""What the doctor's probes saw, in the shapes its pure checks read.

:mod:`roost.doctor.probe` fills these in (DNS through dnspython, HTTPS, TCP, the certificate
files); :mod:`roost.doctor.checks` judges them without any I/O, so every case is a unit
test of plain values.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FOUND", "MISSING", "UNKNOWN", "Certificate", "Looked", "Lookup", "Policy", "Port"]

FOUND = "found"
MISSING = "missing"  # no such name, or no record of the type
UNKNOWN = "unknown"  # the resolver did not tell: timeout, SERVFAIL, ...


@dataclass(frozen=True, slots=True)
class Looked:
    """One DNS question's answer. ``values`` by type: TXT the text (its strings joined,
    RFC 7208 §3.3); MX ``(preference, host)`` with host ``""`` for a null MX (RFC 7505);
    A/AAAA the address; PTR and CNAME the name; TLSA ``(usage, selector, type, hex)``.
    Host names are lower case without the final dot."""

    state: str
    values: tuple[Any, ...] = ()
    reason: str = ""

    @property
    def found(self) -> bool:
        return self.state == FOUND

    @property
    def unknown(self) -> bool:
        return self.state == UNKNOWN


#: Ask DNS: (name, type) -> answer.
Lookup = Callable[[str, str], Looked]


@dataclass(frozen=True, slots=True)
class Policy:
    """An HTTPS fetch of an MTA-STS policy: ``error`` when no answer came (connection,
    certificate), else the status, media type and (at most 64 KiB of) body."""

    url: str
    status: int = 0
    content_type: str = ""
    body: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class Certificate:
    """The served certificate as read from its files.

    ``problem``: it cannot be used at all (tls.check_pair's message). ``trust_error``:
    why the system's CAs do not vouch for it (empty when they do). ``chain``: the DER
    certificates port 25 serves, the server's own first, for TLSA matching.
    """

    problem: str = ""
    names: tuple[str, ...] = ()
    not_before: datetime.datetime | None = None
    not_after: datetime.datetime | None = None
    self_signed: bool = False
    trust_error: str = ""
    chain: tuple[bytes, ...] = field(default=(), repr=False)
    #: (DER SubjectPublicKeyInfo) of each certificate of ``chain``, in the same order
    spkis: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def trusted(self) -> bool:
        return not self.problem and not self.trust_error


@dataclass(frozen=True, slots=True)
class Port:
    """A TCP connection attempt to one address and port."""

    address: str
    port: int
    open: bool
    reason: str = ""
