"""What the strict TLS listeners accept, one rule for nginx, Dovecot and Postfix.

TLS 1.2 and 1.3 only, and in TLS 1.2 only forward-secret AEAD suites: the server profile
Mozilla calls "intermediate" (https://wiki.mozilla.org/Security/Server_Side_TLS). CBC-mode
suites are left out (Lucky13 and the padding-oracle family, RFC 7457 section 2). TLS 1.3's
suites are all AEAD and OpenSSL configures them apart from this list. Port 25 under
TLS_PERMISSIVE is the one deliberate exception (RFC 7435).
"""

from __future__ import annotations

__all__ = ["CIPHERS", "MIN_PROTOCOL", "POSTFIX_EXCLUDED"]

MIN_PROTOCOL = "TLSv1.2"

#: OpenSSL cipher list for TLS 1.2 (nginx ``ssl_ciphers``, Dovecot ``ssl_cipher_list``)
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!DSS"

#: The same rule in Postfix's terms: its "high" grade minus what CIPHERS leaves out
#: (anonymous, RSA key exchange, CBC suites, whose MACs are SHA1/SHA256/SHA384).
#: postconf(5) advises against redefining tls_high_cipherlist, so Postfix excludes instead.
POSTFIX_EXCLUDED = "aNULL, kRSA, DSS, SHA1, SHA256, SHA384"
