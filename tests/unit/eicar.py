"""The EICAR test file and a one-line ClamAV database that knows it, so virus scanning is
tested without downloading any signatures."""

from __future__ import annotations

from pathlib import Path

# https://www.eicar.org/download-anti-malware-testfile/
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
# A ClamAV hash signature for it: MD5, size, name (sigtool(1), .hdb format).
EICAR_SIGNATURE = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"


def signature_database(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    (where / "roost-test.hdb").write_text(EICAR_SIGNATURE)
    return where
