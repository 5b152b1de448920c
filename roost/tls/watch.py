"""The change notice: noticing that the served certificate changed while the stack runs.

An administrator replacing ``cert.pem``, a renewal by certbot or, later, Roost's own ACME
client all end the same way: new files in place of the old ones. The daemons keep the pair
they loaded until they reload, so the runner polls a :class:`CertificateWatch` and, when
it reports a new pair that passed the check, reloads every service that declares
:data:`CERTIFICATE_CHANGED` among its reload triggers. Mailu does the same with a polling
file watcher that runs ``nginx -s reload`` and ``doveadm reload`` (Mailu's
core/nginx/certwatcher.py). A pair that fails the check is reported and not loaded: the
daemons keep serving the previous one.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from roost.tls.check import CheckedCertificate, TLSError, check_pair

__all__ = ["CERTIFICATE_CHANGED", "CertificateChange", "CertificateWatch"]

#: The reload trigger of services that serve the certificate (Service.reload_on).
CERTIFICATE_CHANGED = "certificate"

#: (device, inode, size, mtime in ns) of each file; None for a missing one
_Signature = tuple[tuple[int, int, int, int] | None, ...]


@dataclass(frozen=True)
class CertificateChange:
    """What changed: a checked new pair, or why the new files cannot be used."""

    certificate: CheckedCertificate | None = None
    error: str | None = None


class CertificateWatch:
    """Remembers the pair as loaded and says when the files hold a different one.

    Polling costs a ``stat`` call per file; the files are read only when those change, and a
    change is reported only when the content differs (a ``touch`` reloads nothing).
    """

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        hostnames: Sequence[str],
        also: Sequence[Path] = (),
    ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.hostnames = tuple(hostnames)
        # other files served with the key (port 25's chain): a change reloads too
        self.files = tuple(dict.fromkeys((cert_file, key_file, *also)))
        self._signature = self._stat()
        self._content = self._digest()

    def poll(self) -> CertificateChange | None:
        """None while the files are as last seen; otherwise the checked change."""
        signature = self._stat()
        if signature == self._signature:
            return None
        self._signature = signature
        content = self._digest()
        if content == self._content:
            return None
        try:
            checked = check_pair(self.cert_file, self.key_file, self.hostnames)
        except TLSError as exc:
            # Not remembered as loaded: once the files are fixed, that is a change again.
            return CertificateChange(error=str(exc))
        self._content = content
        return CertificateChange(certificate=checked)

    def _stat(self) -> _Signature:
        found: list[tuple[int, int, int, int] | None] = []
        for path in self.files:
            try:
                info = os.stat(path)
            except OSError:
                found.append(None)
                continue
            found.append((info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns))
        return tuple(found)

    def _digest(self) -> str | None:
        digest = hashlib.sha256()
        for path in self.files:
            try:
                data = path.read_bytes()
            except OSError:
                return None
            digest.update(len(data).to_bytes(8, "big") + data)
        return digest.hexdigest()
