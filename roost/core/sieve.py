"""The Sieve script Dovecot runs before each user's own scripts (Mailu's
``core/admin/mailu/internal/templates/default.sieve``).

Mailu's admin renders one script per user at every delivery; Roost does the same, and the
gate serves it to Pigeonhole as its ``sieve_before`` script over Dovecot's dict protocol
(:mod:`roost.gate.dictproxy`). In order, the script

1. files spam into ``Junk`` (and marks it read when ``spam_mark_as_read``) when the spam
   score in ``X-Spam-Level``, as a percentage, exceeds the user's ``spam_threshold``, and
   stops: neither the auto-reply nor the user's own scripts see spam;
2. sends the auto-reply (RFC 5230 vacation, at most one per sender per day) while it is
   enabled and today lies in ``[reply_startdate, reply_enddate]``, unless the sender looks
   like a no-reply or a system address. Pigeonhole's vacation already refuses to answer
   ``<>``, mailing lists (``List-Id``, ``Precedence: list/bulk/junk``), auto-submitted
   mail (``Auto-Submitted`` other than ``no``, RFC 3834 §2) and
   ``X-Auto-Response-Suppress``. Its check of system senders (MAILER-DAEMON, LISTSERV,
   majordomo, owner-*, *-request) looks at the envelope sender, which Postfix has
   rewritten with SRS for every outside sender (``SRS0=hash=tt=domain=local@DOMAIN``,
   docs/routing.md), so the script makes that check itself, on the local part as sent
   or as the last field of its SRS form.

Every text that comes from a user (display name, subject, body) is written as a Sieve
quoted string with RFC 5228 §2.4.2 escaping, so no value can end the string and add a
command. The script never requires "variables" (RFC 5229), so ``${...}`` in a text stays
text, and it never uses the multi-line ``text:`` form, whose lone ``.`` ends the string.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date
from email.utils import formataddr

from roost.core.directory import UserEntry

__all__ = [
    "JUNK_MAILBOX",
    "NO_REPLY_MARKERS",
    "SPAM_SCORE_MAX",
    "SYSTEM_SENDERS",
    "before_script",
    "script_id",
    "sieve_string",
]

#: The special-use \\Junk mailbox Dovecot creates for every user (dovecot.conf namespace).
JUNK_MAILBOX = "Junk"
#: X-Spam-Level carries one star per point, at most 15 (Rspamd, as Mailu configures it):
#: Dovecot's spamtest turns the count into a percentage of this maximum.
SPAM_SCORE_MAX = 15
#: Local parts containing one of these (case-insensitively) never get an auto-reply.
#: Mailu checks the first two; the others are their common spellings.
NO_REPLY_MARKERS = ("noreply", "no-reply", "donotreply", "do-not-reply")
#: Envelope senders that are programs, not people (Pigeonhole's own list), as ``:matches``
#: patterns on the local part: as sent, or at the end of its SRS form (``...=local``).
SYSTEM_SENDERS = (
    "mailer-daemon",
    "*=mailer-daemon",
    "listserv",
    "*=listserv",
    "majordomo",
    "*=majordomo",
    "owner-*",
    "*=owner-*",
    "*-request",
)
#: How often one sender may get the auto-reply (RFC 5230 §4.1 ``:days``).
REPLY_INTERVAL_DAYS = 1
#: How long a delivered Message-ID is remembered per mailbox (see _duplicate_rule).
DUPLICATE_WINDOW_SECONDS = 7200

# C0 controls and DEL, except tab and line feed: a Sieve string may carry them, but in a
# subject or a reply they are never meant and only garble what the sender reads.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _clean_text(text: str) -> str:
    """Text for a multi-line value (the reply body): LF line ends, no other controls."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("", _LINE_BREAK.sub("\n", text))


def _clean_line(text: str) -> str:
    """Text for a header (subject, display name): one line, no controls."""
    return _clean_text(text).replace("\n", " ").replace("\t", " ").strip()


def sieve_string(text: str) -> str:
    """``text`` as a Sieve quoted string (RFC 5228 §2.4.2).

    Only ``"`` and ``\\`` need a backslash; every other character, line feeds included,
    stands for itself between the quotes. Pigeonhole refuses a carriage return that is not
    part of CRLF inside a string, so line ends must already be normalised.
    """
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _string_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(sieve_string(item) for item in items) + "]"


def _duplicate_rule() -> tuple[list[str], list[str]]:
    """Store a message once even when it is delivered twice (RFC 7352 duplicate).

    LMTP is at-least-once: when Dovecot dies after saving a message but before answering,
    Postfix rightly tries again and the user would see the message twice. Remembering the
    Message-ID for a while makes the retry harmless, as Cyrus's duplicate suppression
    does; the same message reaching one mailbox through two aliases is stored once too.
    Messages without a Message-ID are never treated as duplicates.
    """
    return ["duplicate"], [
        "# A message this mailbox already stored (same Message-ID) is not stored again.",
        f"if duplicate :seconds {DUPLICATE_WINDOW_SECONDS} {{",
        "    discard;",
        "    stop;",
        "}",
    ]


def _spam_rule(user: UserEntry) -> tuple[list[str], list[str]]:
    """Spam filing (RFC 5235 spamtest, RFC 5232 flags, RFC 5490 ``:create``)."""
    extensions = ["fileinto", "mailbox", "relational", "comparator-i;ascii-numeric", "spamtestplus"]
    flags = ""
    if user.spam_mark_as_read:
        extensions.append("imap4flags")
        flags = ':flags "\\\\Seen" '
    threshold = sieve_string(str(max(0, int(user.spam_threshold))))
    return extensions, [
        "# Spam above the user's threshold goes to Junk; nothing after this sees it.",
        f'if spamtest :percent :value "gt" :comparator "i;ascii-numeric" {threshold} {{',
        f"    fileinto :create {flags}{sieve_string(JUNK_MAILBOX)};",
        "    stop;",
        "}",
    ]


def _reply_rule(user: UserEntry) -> tuple[list[str], list[str]]:
    """The auto-reply (RFC 5230), skipped for no-reply senders and programs."""
    arguments = [f":days {REPLY_INTERVAL_DAYS}"]
    subject = _clean_line(user.reply_subject or "")
    if subject:
        arguments.append(f":subject {sieve_string(subject)}")
    name = _clean_line(user.displayed_name or "")
    if name:
        # RFC 5322 §3.4 name-addr: formataddr quotes the phrase (and RFC 2047-encodes
        # non-ASCII), then the whole address becomes one Sieve string.
        arguments.append(f":from {sieve_string(formataddr((name, user.email), 'utf-8'))}")
    body = sieve_string(_clean_text(user.reply_body or ""))
    markers = _string_list(NO_REPLY_MARKERS)
    return ["envelope", "vacation"], [
        "# The auto-reply, never to a no-reply address (as sender or as where to reply)",
        "# nor to a program.",
        "if not anyof (",
        f'    address :localpart :contains ["from", "reply-to"] {markers},',
        f'    envelope :localpart :contains "from" {markers},',
        f'    envelope :localpart :matches "from" {_string_list(SYSTEM_SENDERS)}',
        ") {",
        f"    vacation {' '.join(arguments)}",
        f"        {body};",
        "}",
    ]


def before_script(user: UserEntry, today: date) -> str:
    """The script for one delivery to ``user`` on ``today`` (the reply's date window).

    Only the extensions a rule uses are required.
    """
    rules = [_duplicate_rule()]
    if user.spam_enabled:
        rules.append(_spam_rule(user))
    if user.reply_active(today):
        rules.append(_reply_rule(user))
    extensions = [name for required, _ in rules for name in required]
    lines = ["# Generated by Roost for each delivery from the user's settings; do not edit."]
    if extensions:
        lines.append(f"require {_string_list(tuple(dict.fromkeys(extensions)))};")
    for _, rule in rules:
        lines += rule
    return "\n".join(lines) + "\n"


def script_id(script: str) -> str:
    """Pigeonhole's data ID for a dict script: it changes exactly when the text does.

    Pigeonhole compares the ID from the name lookup with the one recorded in a cached
    binary, and recompiles when they differ (Pigeonhole doc/locations/dict.txt).
    """
    return "roost-" + hashlib.sha256(script.encode("utf-8")).hexdigest()[:24]
