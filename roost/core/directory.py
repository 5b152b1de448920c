"""The in-memory directory the gate answers every daemon lookup from.

The gate answers Postfix, Dovecot and Rspamd from an index of the store that is rebuilt
when the store changes, so no lookup waits on SQL. This module is that index: built
once from plain records (the gate loads them; core does no I/O), then read-only, with
lookups that cost a few dictionary probes (and a scan of one domain's wildcard aliases).

Behaviour follows Mailu's admin (core/admin/mailu/models.py ``Email.resolve_destination``
for address resolution, internal/views/postfix.py for sender ownership and relayed-domain
transports); deliberate differences are marked "Roost:".
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType

from roost.core.address import (
    DOMAIN_MAX,
    AddressError,
    domain_to_ascii,
    forbidden_char,
    split_detail,
)
from roost.core.transport import TransportError, relay_transport

__all__ = [
    "AliasEntry",
    "Directory",
    "RelayEntry",
    "TokenEntry",
    "TransportError",
    "UserEntry",
    "like_to_matcher",
]


@dataclass(frozen=True, slots=True)
class UserEntry:
    """One mailbox, with the columns of Mailu's ``user`` table that shape mail handling.

    ``email`` is the canonical (lower-case, punycode) address; ``quota_bytes`` 0 = unlimited.
    """

    email: str
    localpart: str
    domain: str
    password_hash: str
    enabled: bool = True
    enable_imap: bool = True
    enable_pop: bool = True
    global_admin: bool = False
    allow_spoofing: bool = False
    forward_enabled: bool = False
    forward_destination: tuple[str, ...] = ()
    forward_keep: bool = True
    quota_bytes: int = 0
    quota_bytes_used: int = 0
    reply_enabled: bool = False
    reply_subject: str | None = None
    reply_body: str | None = None
    reply_startdate: date = date(1900, 1, 1)
    reply_enddate: date = date(2999, 12, 31)
    displayed_name: str = ""
    spam_enabled: bool = True
    spam_mark_as_read: bool = True
    spam_threshold: int = 80
    change_pw_next_login: bool = False
    #: Two-factor login is on (Roost's own): passwords no longer open mail protocols
    #: unless AUTH_TOTP_MAIL_PASSWORDS, and a web login needs a second step.
    totp_enabled: bool = False

    def reply_active(self, today: date) -> bool:
        """Mailu's ``reply_active``: enabled and start <= today <= end (Mailu's models.py)."""
        return self.reply_enabled and self.reply_startdate <= today <= self.reply_enddate


@dataclass(frozen=True, slots=True)
class AliasEntry:
    """One alias (Mailu's ``alias`` table); for a wildcard, ``localpart`` is a LIKE pattern."""

    email: str
    localpart: str
    domain: str
    wildcard: bool
    destination: tuple[str, ...]
    disabled: bool = False
    owner_email: str | None = None


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """An app password (Mailu's ``token`` table): ``ip`` lists CIDRs; empty = any address."""

    id: int
    user_email: str
    password_hash: str
    ip: tuple[str, ...] = ()
    comment: str = ""


@dataclass(frozen=True, slots=True)
class RelayEntry:
    """A relayed domain (Mailu's ``relay`` table); ``smtp`` is the target, as
    :func:`~roost.core.transport.relay_transport` reads it."""

    name: str
    smtp: str | None = None


Matcher = Callable[[str], bool]


def _match_all(_local: str) -> bool:
    return True


def like_to_matcher(pattern: str) -> Matcher:
    """Compile an SQL LIKE pattern (``%`` any run, ``_`` one character) to a predicate.

    Mailu matches wildcard aliases with ``:local LIKE alias.localpart`` (models.py
    ``Email.resolve_destination``). Matching is case-insensitive: both sides are
    lower-cased. Common shapes skip the regex engine: ``%`` (catch-all), ``prefix%`` and
    ``%suffix``.
    """
    pat = pattern.lower()
    if pat and set(pat) == {"%"}:
        return _match_all
    if "_" not in pat:
        core = pat.strip("%")
        if "%" not in core:
            if pat == core:
                return core.__eq__
            if pat == core + "%":
                return _startswith(core)
            if pat == "%" + core:
                return _endswith(core)
    parts = []
    for ch in pat:
        if ch == "%":
            parts.append(".*")
        elif ch == "_":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    regex = re.compile("".join(parts), re.DOTALL)
    return lambda local: regex.fullmatch(local) is not None


def _startswith(prefix: str) -> Matcher:
    return lambda local: local.startswith(prefix)


def _endswith(suffix: str) -> Matcher:
    return lambda local: local.endswith(suffix)


class _Wildcard:
    """An active wildcard alias, ready to match (kept tiny: there may be thousands)."""

    __slots__ = ("destinations", "match", "pattern")

    def __init__(self, pattern: str, match: Matcher, destinations: tuple[str, ...]) -> None:
        self.pattern = pattern
        self.match = match
        self.destinations = destinations


def _insert_detail(destination: str, detail: str) -> str:
    """``joe@x`` + ``+y`` -> ``joe+y@x`` (Mailu #2988)."""
    local, at, domain = destination.rpartition("@")
    if not at:
        return destination + detail
    return f"{local}{detail}@{domain}"


class Directory:
    """Read-only index of domains, users, aliases, tokens and relays.

    Build it with :meth:`build`; ``Directory()`` is the empty directory (answers nothing),
    useful before the first load. Every lookup accepts untrusted text and never raises,
    except :meth:`transport` which raises :class:`TransportError` for a relay whose target
    cannot be parsed (so the gate can answer Postfix with a temporary error, not "not found").
    """

    def __init__(self) -> None:
        self._domains: frozenset[str] = frozenset()
        self._alternatives: dict[str, str] = {}
        self._canon: dict[str, str] = {}
        self._relays: dict[str, RelayEntry] = {}
        self._transports: dict[str, str | TransportError] = {}
        self._users: dict[str, UserEntry] = {}
        self._forwards: dict[str, tuple[str, ...]] = {}
        self._spoofers: dict[str, tuple[str, ...]] = {}
        #: Canonical emails of users who are not enabled (empty: nothing to filter).
        self._disabled: frozenset[str] = frozenset()
        self._aliases: tuple[AliasEntry, ...] = ()
        self._exact: dict[tuple[str, str], tuple[str, ...]] = {}
        self._wild: dict[str, tuple[_Wildcard, ...]] = {}
        self._tokens: dict[str, tuple[TokenEntry, ...]] = {}
        self._token_count = 0
        #: Primary domains whose users must enrol in two-factor login.
        self._totp_domains: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        domains: Iterable[str] = (),
        alternatives: Mapping[str, str] | None = None,
        relays: Iterable[RelayEntry] = (),
        users: Iterable[UserEntry] = (),
        aliases: Iterable[AliasEntry] = (),
        tokens: Iterable[TokenEntry] = (),
        totp_domains: Iterable[str] = (),
    ) -> Directory:
        """Index plain records; ``alternatives`` maps alternative name -> primary domain.

        ``totp_domains`` are the domains that require two-factor login of their users.

        Names are normalised defensively (lower-case, punycode) so a record written by an
        older import still matches. Invalid names are skipped rather than failing the whole
        build: one bad row must not take every mailbox offline.
        """
        self = cls()
        ascii_cache: dict[str, str | None] = {}

        def norm_domain(name: str | None) -> str | None:
            if not name:
                return None
            try:
                return ascii_cache[name]
            except KeyError:
                pass
            try:
                value: str | None = domain_to_ascii(name, max_length=DOMAIN_MAX)
            except AddressError:
                value = None
            ascii_cache[name] = value
            return value

        def norm_email(email: str | None) -> str | None:
            if not email:
                return None
            local, at, domain = email.rpartition("@")
            if not at or not local:
                return None
            domain_ascii = norm_domain(domain)
            if domain_ascii is None:
                return None
            return f"{local.lower()}@{domain_ascii}"

        def norm_destinations(items: Iterable[str]) -> tuple[str, ...]:
            """Punycode each destination's domain, drop blanks, de-duplicate and sort."""
            out = set()
            for item in items:
                text = item.strip() if isinstance(item, str) else ""
                if not text:
                    continue
                local, at, domain = text.rpartition("@")
                if at:
                    domain_ascii = norm_domain(domain)
                    text = f"{local}@{domain_ascii if domain_ascii else domain.lower()}"
                out.add(text)
            return tuple(sorted(out))

        self._domains = frozenset(d for d in map(norm_domain, domains) if d)
        canon = {d: d for d in self._domains}
        alts: dict[str, str] = {}
        for alt, primary in (alternatives or {}).items():
            alt_ascii, primary_ascii = norm_domain(alt), norm_domain(primary)
            if alt_ascii and primary_ascii and alt_ascii not in self._domains:
                alts[alt_ascii] = primary_ascii
                canon[alt_ascii] = primary_ascii
        self._alternatives = alts
        self._canon = canon
        self._totp_domains = frozenset(
            d for d in map(norm_domain, totp_domains) if d in self._domains
        )

        for relay in relays:
            name = norm_domain(relay.name)
            if name is None:
                continue
            self._relays[name] = relay
            try:
                self._transports[name] = relay_transport(name, relay.smtp)
            except TransportError as exc:
                self._transports[name] = exc

        spoofers: dict[str, list[str]] = {}
        for user in users:
            email = norm_email(user.email)
            if email is None:
                continue
            if email != user.email:
                local, _, domain = email.rpartition("@")
                user = dataclasses.replace(user, email=email, localpart=local, domain=domain)
            self._users[email] = user
            if user.forward_destination:
                self._forwards[email] = norm_destinations(user.forward_destination)
            if user.allow_spoofing:
                spoofers.setdefault(email.rpartition("@")[2], []).append(email)
        self._spoofers = {d: tuple(sorted(emails)) for d, emails in spoofers.items()}
        self._disabled = frozenset(e for e, u in self._users.items() if not u.enabled)

        all_aliases = []
        wild: dict[str, list[_Wildcard]] = {}
        matchers: dict[str, Matcher] = {}
        for alias in aliases:
            all_aliases.append(alias)
            if alias.disabled:
                continue
            if alias.owner_email:
                # An alias with an owner is active iff the owner is enabled, as in Mailu.
                # Roost: an owner missing from the index counts as not enabled, since
                # deleting the owner deletes the alias in Mailu; a dangling row must not
                # keep receiving.
                owner = self._users.get(norm_email(alias.owner_email) or "")
                if owner is None or not owner.enabled:
                    continue
            alias_domain = norm_domain(alias.domain)
            if alias_domain is None or not alias.localpart:
                continue
            local = alias.localpart.lower()
            destinations = norm_destinations(alias.destination)
            if alias.wildcard:
                match = matchers.get(local)
                if match is None:
                    match = matchers[local] = like_to_matcher(local)
                wild.setdefault(alias_domain, []).append(_Wildcard(local, match, destinations))
            else:
                self._exact[(alias_domain, local)] = destinations
        self._aliases = tuple(all_aliases)
        # Preference among wildcards: longest pattern first (Mailu orders by
        # char_length(localpart) desc); ties broken by the pattern text for a stable answer.
        self._wild = {
            d: tuple(sorted(items, key=lambda w: (-len(w.pattern), w.pattern)))
            for d, items in wild.items()
        }

        by_user: dict[str, list[TokenEntry]] = {}
        for token in tokens:
            email = norm_email(token.user_email)
            if email is None:
                continue
            by_user.setdefault(email, []).append(token)
            self._token_count += 1
        self._tokens = {e: tuple(sorted(ts, key=lambda t: t.id)) for e, ts in by_user.items()}
        return self

    # ------------------------------------------------------------------ counts and views

    @property
    def domains(self) -> frozenset[str]:
        """Primary domain names (punycode)."""
        return self._domains

    @property
    def alternatives(self) -> Mapping[str, str]:
        """Alternative name -> primary domain."""
        return MappingProxyType(self._alternatives)

    @property
    def relays(self) -> Mapping[str, RelayEntry]:
        """Relayed domain name -> relay record."""
        return MappingProxyType(self._relays)

    @property
    def users(self) -> Mapping[str, UserEntry]:
        """Canonical email -> user."""
        return MappingProxyType(self._users)

    @property
    def aliases(self) -> tuple[AliasEntry, ...]:
        """Every alias record given to :meth:`build`, active or not."""
        return self._aliases

    def counts(self) -> dict[str, int]:
        """Sizes for ``roost status`` and the gate's health answer."""
        return {
            "domains": len(self._domains),
            "alternatives": len(self._alternatives),
            "relays": len(self._relays),
            "users": len(self._users),
            "aliases": len(self._aliases),
            "tokens": self._token_count,
        }

    # ------------------------------------------------------------------ domains

    def canonical_domain(self, domain: str) -> str | None:
        """The primary domain for ``domain`` (itself, or an alternative's primary), else None.

        Mailu's alternative domains: every address ``x@alt`` resolves as ``x@primary``.
        """
        if not isinstance(domain, str):
            return None
        found = self._canon.get(domain)
        if found is not None:
            return found
        if not domain or domain.startswith("["):
            return None
        try:
            return self._canon.get(domain_to_ascii(domain, max_length=DOMAIN_MAX))
        except AddressError:
            return None

    def is_local_domain(self, domain: str) -> bool:
        """True for a Domain or an Alternative (SRS and anti-spoofing treat both as local)."""
        return self.canonical_domain(domain) is not None

    def has_domain(self, domain: str) -> bool:
        """Postfix ``virtual_mailbox_domains`` socketmap answer (Mailu ``/postfix/domain``).

        A Domain or Alternative exists; an address literal such as ``[192.0.2.1]`` never
        matches.
        """
        if not isinstance(domain, str) or domain.startswith("["):
            return False
        return self.canonical_domain(domain) is not None

    def relay_domain(self, domain: str) -> bool:
        """True when ``domain`` is a relayed domain (Postfix ``relay_domains``)."""
        return self._relay_name(domain) is not None

    def _relay_name(self, domain: str) -> str | None:
        if not isinstance(domain, str):
            return None
        if domain in self._relays:
            return domain
        if not domain or domain.startswith("["):
            return None
        try:
            name = domain_to_ascii(domain, max_length=DOMAIN_MAX)
        except AddressError:
            return None
        return name if name in self._relays else None

    # ------------------------------------------------------------------ users

    def _split(self, address: str) -> tuple[str, str] | None:
        """``(lower-case local, primary domain)`` for a local address, else None.

        Refuses what Mailu answers 404 for (Mailu #3252): more than one '@', a
        leading '"', and (Roost) characters that would corrupt a comma-joined answer.
        """
        if not isinstance(address, str) or address.startswith('"') or address.count("@") != 1:
            return None
        local, _, domain = address.partition("@")
        if not local or forbidden_char(local) is not None:
            return None
        canon = self.canonical_domain(domain)
        if canon is None:
            return None
        return local.lower(), canon

    def user(self, email: str) -> UserEntry | None:
        """The user for ``email``, with ``x@alternative`` meaning ``x@primary``; else None."""
        found = self._users.get(email) if isinstance(email, str) else None
        if found is not None:
            return found
        split = self._split(email)
        if split is None:
            return None
        return self._users.get(f"{split[0]}@{split[1]}")

    def user_of(self, address: str, delimiter: str = "") -> UserEntry | None:
        """The user whose mailbox ``address`` names: the full local part first, else the
        local part without its detail (``joe+news@alt`` is joe@primary); else None."""
        split = self._split(address)
        if split is None:
            return None
        return self._user_of(split[0], split[1], delimiter)

    def mailbox(self, email: str) -> str | None:
        """Canonical email of the user behind ``email`` whether or not the user is enabled."""
        found = self.user(email)
        return found.email if found is not None else None

    def totp_required(self, domain: str) -> bool:
        """True when ``domain`` (or its primary) requires two-factor login of its users."""
        canon = self.canonical_domain(domain)
        return canon is not None and canon in self._totp_domains

    def tokens_of(self, email: str) -> tuple[TokenEntry, ...]:
        """App tokens of the user with canonical address ``email`` (ordered by id)."""
        return self._tokens.get(email, ())

    def spoofers(self, domain: str) -> tuple[str, ...]:
        """Users of ``domain``'s primary domain with ``allow_spoofing`` (Mailu's
        ``/postfix/sender/login``)."""
        canon = self.canonical_domain(domain)
        return self._spoofers.get(canon, ()) if canon else ()

    # ------------------------------------------------------------------ resolution

    def resolve(self, address: str, delimiter: str = "") -> tuple[str, ...] | None:
        """Postfix ``virtual_alias_maps`` answer for ``address`` (Mailu's ``/postfix/alias``).

        ``delimiter`` is RECIPIENT_DELIMITER (each character is a delimiter). Returns the
        destinations, de-duplicated, sorted and with punycode domains, or None (Postfix:
        not found). A bare domain key returns ``(primary,)`` when the domain is local.
        """
        return self._resolve(address, delimiter, force_keep=False)

    def resolve_for_sender(self, address: str, delimiter: str = "") -> tuple[str, ...] | None:
        """:meth:`resolve` with forward-keep forced on, as sender ownership needs.

        A forwarding user still owns their own address even when they keep no copy.
        """
        return self._resolve(address, delimiter, force_keep=True)

    def _resolve(self, address: str, delimiter: str, force_keep: bool) -> tuple[str, ...] | None:
        if not isinstance(address, str) or not address or address.startswith('"'):
            return None
        if "@" not in address:
            # Roost: Mailu echoes any bare key; answering only for local domains keeps
            # Postfix's default virtual_alias_domains (= $virtual_alias_maps) from
            # claiming every remote domain.
            canon = self.canonical_domain(address)
            return (canon,) if canon is not None else None
        split = self._split(address)
        if split is None:
            return None
        local, domain = split
        email = f"{local}@{domain}"

        # 1. A user, by the full local part or else by the stripped one. A disabled user's
        #    own address still resolves to itself, so Postfix knows it (reject_unlisted_
        #    sender); mail to it is refused at RCPT instead (:meth:`recipient_disabled`).
        user = self._user_of(local, domain, delimiter)
        if user is not None:
            if not user.forward_enabled:
                return (email,)
            destinations = set(self._live(self._forwards.get(user.email, ()), delimiter))
            # Roost: forwarding on with an empty list (or a list of disabled users) keeps
            # the mail instead of making the address unknown (Mailu answers 404 there and
            # the mail bounces).
            if user.forward_keep or force_keep or not destinations:
                destinations.add(email)
            return tuple(sorted(destinations))

        # 2. Active aliases, without the disabled users among their destinations.
        targets = self._alias_targets(local, domain, delimiter)
        if not targets:
            return None
        return self._live(targets, delimiter) or None

    def _user_of(self, local: str, domain: str, delimiter: str) -> UserEntry | None:
        """The user of a split address (lower-case local, primary domain): the full local
        part first, else the local part without its detail (Mailu's resolution, step 1)."""
        user = self._users.get(f"{local}@{domain}")
        if user is None:
            stripped, detail = split_detail(local, delimiter)
            if detail:
                user = self._users.get(f"{stripped}@{domain}")
        return user

    def _alias_targets(self, local: str, domain: str, delimiter: str) -> tuple[str, ...] | None:
        """Destinations of the active alias that matches (step 2), or None.

        Exact aliases before wildcards, then the longest pattern; an explicit alias matched
        on the stripped local part gets the detail back in every destination (#2988).
        """
        exact = self._exact.get((domain, local))
        if exact is not None:
            return exact
        stripped, detail = split_detail(local, delimiter)
        wildcards = self._wild.get(domain, ())
        if detail:
            exact = self._exact.get((domain, stripped))
            if exact is not None:
                return tuple(sorted({_insert_detail(d, detail) for d in exact}))
            for wildcard in wildcards:
                if wildcard.match(stripped):
                    return wildcard.destinations
        for wildcard in wildcards:
            if wildcard.match(local):
                return wildcard.destinations
        return None

    def _disabled_user(self, address: str, delimiter: str) -> bool:
        """True when ``address`` is the mailbox of a user who is not enabled."""
        split = self._split(address)
        if split is None:
            return False
        user = self._user_of(split[0], split[1], delimiter)
        return user is not None and not user.enabled

    def _live(self, destinations: Iterable[str], delimiter: str) -> tuple[str, ...]:
        """``destinations`` without the mailboxes of disabled users (Roost's rule, see
        :meth:`recipient_disabled`): an alias keeps delivering to everyone else."""
        if not self._disabled:
            return tuple(destinations)
        return tuple(d for d in destinations if not self._disabled_user(d, delimiter))

    def recipient_disabled(self, address: str, delimiter: str = "") -> bool:
        """True when mail to ``address`` would reach only disabled users.

        Mailu's documentation says a disabled user receives no mail while its code delivers
        anyway (its alias lookup does not look at ``enabled``). Roost keeps the documented
        promise: the gate's ``recipientaccess`` map makes Postfix refuse such a recipient
        at RCPT with ``550 5.2.1 Mailbox disabled`` (RFC 3463: X.2.1, mailbox disabled, not
        accepting messages), so the sender learns it at once and nothing is accepted and
        then lost. That covers the user's own address (detail and alternative domains included, and
        whatever it forwards to) and an alias all of whose destinations are disabled users;
        an alias with other destinations keeps delivering to them (:meth:`resolve`).
        """
        if not self._disabled or not isinstance(address, str) or "@" not in address:
            return False
        split = self._split(address)
        if split is None:
            return False
        local, domain = split
        user = self._user_of(local, domain, delimiter)
        if user is not None:
            return not user.enabled
        targets = self._alias_targets(local, domain, delimiter)
        return targets is not None and bool(targets) and not self._live(targets, delimiter)

    def sender_logins(
        self, sender: str, delimiter: str = "", wildcard_senders: Sequence[str] = ()
    ) -> tuple[str, ...] | None:
        """Postfix ``smtpd_sender_login_maps`` answer: logins allowed to send as ``sender``.

        As Mailu's ``/postfix/sender/login``: the union of (1) the resolution of the
        sender with its detail stripped and forward-keep forced on, (2) WILDCARD_SENDERS,
        (3) users of the sender's own primary domain with ``allow_spoofing``. A key without
        '@' yields WILDCARD_SENDERS only; more than one '@' or a leading '"' yields None.
        """
        if not isinstance(sender, str) or not sender or sender.startswith('"'):
            return None
        ats = sender.count("@")
        if ats > 1:
            return None
        logins = {w.strip().lower() for w in wildcard_senders if w and w.strip()}
        if ats == 1:
            local, _, domain = sender.partition("@")
            stripped, _detail = split_detail(local, delimiter)
            resolved = self._resolve(f"{stripped}@{domain}", delimiter, force_keep=True)
            if resolved:
                logins.update(resolved)
            logins.update(self.spoofers(domain))
        return tuple(sorted(logins)) or None

    def transport(self, key: str) -> str | None:
        """Postfix ``transport_maps`` answer for a relayed domain (Mailu's ``/postfix/transport``).

        ``key`` is an address or a domain. ``*`` and address literals (``[...]`` or
        ``x@[...]``) are never relayed. Raises :class:`TransportError` when the relay's
        target cannot be parsed (Mailu answers 400 there).
        """
        if not isinstance(key, str) or key == "*" or key.endswith("]"):
            return None
        domain = key.rpartition("@")[2]
        name = self._relay_name(domain)
        if name is None:
            return None
        answer = self._transports[name]
        if isinstance(answer, TransportError):
            raise answer
        return answer
