"""What the web's sessions in Redis hold that others read too (the gate checks the webmail's
tokens against them, :mod:`roost.core.webmailtoken`): where they are, and the password
fingerprint a signed-in session records.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["REDIS_DB", "SESSION_KEY", "password_fingerprint"]

#: Mailu keeps its sessions in Redis database 3; the gate's rate limits use database 2.
REDIS_DB = 3
#: A session is kept under this prefix and the SHA-256 (hex) of its id.
SESSION_KEY = "session:"


def password_fingerprint(secret_key: str, password_hash: str) -> str:
    """What a session keeps of the password hash it was signed in with: an HMAC-SHA256
    under an HKDF (RFC 5869) sub-key of SECRET_KEY, so neither Redis nor a session's data
    reveals the hash, yet any new hash (a new password, or a rehash) shows."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"roost web session password"
    ).derive(secret_key.encode("utf-8"))
    return hmac.new(key, password_hash.encode("utf-8"), hashlib.sha256).hexdigest()
