"""IMAP's modified UTF-7 for mailbox names (RFC 3501 section 5.1.3).

IMAP4rev1 servers name mailboxes in 7-bit text: printable US-ASCII stands for itself but
``&``, which is written ``&-``; any run of other characters is written ``&``, the run in
UTF-16 (big-endian) as base64 with ``,`` for ``/`` and no padding, then ``-``. A user
names folders in Unicode ("Envoyés"); the fetcher hands the server this form.
"""

from __future__ import annotations

import base64

__all__ = ["encode"]


def _printable(ch: str) -> bool:
    return 0x20 <= ord(ch) <= 0x7E


def _shifted(run: str) -> str:
    coded = base64.b64encode(run.encode("utf-16-be")).decode("ascii").rstrip("=")
    return "&" + coded.replace("/", ",") + "-"


def encode(name: str) -> str:
    """``name`` as an IMAP mailbox name: ``"Envoyés"`` is ``"Envoy&AOk-s"``."""
    out: list[str] = []
    run: list[str] = []
    for ch in name:
        if _printable(ch):
            if run:
                out.append(_shifted("".join(run)))
                run = []
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    if run:
        out.append(_shifted("".join(run)))
    return "".join(out)
