"""The domains' DKIM private keys on disk, where DKIM_PATH says (Mailu keeps them there too).

A key is a file, not a column: ``DKIM_PATH`` (default ``ROOT/dkim/{domain}.{selector}.key``)
filled in with the domain's punycode name and DKIM_SELECTOR, an unencrypted PKCS#8 PEM,
mode ``0640``. Its group is the directory's: ``_roost-web`` when the stack runs the web
application, which makes keys and shows their records (``ROOT/dkim`` is ``2770
root:_roost-web``, :mod:`roost.bootstrap.prepare`), else root's. No other user reads it:
the gate (root) reads every key when it loads its index and writes them into Rspamd's own
Redis, from which Rspamd signs (docs/ARCHITECTURE.md, "Secrets and privileges").

Changes that come with a store transaction follow it: :func:`stage` records a key to
write or remove, and a domain deleted in the transaction takes its key with it; the files
change only once the transaction has committed, and not at all when it rolls back (a
dry-run import leaves the keys as they were). The pure parts (making a key, the DNS
record) are :mod:`roost.core.dkim`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from roost.core import dkim
from roost.settings import Settings
from roost.store.models import Domain

__all__ = [
    "KEEP",
    "DkimKeyError",
    "DkimKeys",
    "Rotation",
    "after_commit",
    "bind",
    "stage",
    "staged",
]

log = logging.getLogger("roost.dkim")

DkimKeyError = dkim.DkimKeyError

#: :func:`stage` value: leave the key file as it is, even if the domain was deleted and
#: made again in the same transaction (an import's ``<hidden>`` key).
KEEP = "keep"

_SETTINGS = "roost.settings"
_STAGED = "roost.dkim.staged"
_DELETED = "roost.dkim.deleted"
#: roost.store.db's mark of a transaction that changed something.
_STORE_CHANGED = "roost_store_changed"


@dataclass(frozen=True, slots=True)
class Rotation:
    """What one ``roost dkim rotate`` step did: ``published`` (a new key under ``other``),
    ``waiting`` (its record is not in DNS yet), ``switched`` (signing with ``active`` now,
    ``other`` is the old key), ``retired`` (``other``, the old key, is gone)."""

    step: str
    active: str
    other: str


class DkimKeys:
    """The key files of one ROOT's domains, named by the stored (punycode) domain name."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def selectors(self) -> tuple[str, str]:
        """DKIM_SELECTOR and the second selector a rotation takes turns with."""
        return dkim.rotation_selectors(self.settings.DKIM_SELECTOR)

    def _state(self, domain: str) -> Path:
        if "/" in domain or domain.startswith("."):
            raise DkimKeyError(f"{domain!r} is not a stored domain name")
        return self.settings.ROOT / "dkim" / f"{domain}.selector"

    def _read_state(self, domain: str) -> tuple[str, str | None]:
        """(selector in use, selector of the old key a rotation still has to retire)."""
        try:
            words = self._state(domain).read_text(encoding="ascii").split()
        except (FileNotFoundError, UnicodeDecodeError):
            words = []
        active = words[0] if words and words[0] in self.selectors else self.selectors[0]
        retiring = words[1] if len(words) > 1 and words[1] in self.selectors else None
        return active, retiring if retiring != active else None

    def _write_state(self, domain: str, active: str, retiring: str | None) -> None:
        state = self._state(domain)
        if active == self.selectors[0] and retiring is None:
            state.unlink(missing_ok=True)
        else:
            self._replace(state, f"{active} {retiring or ''}".strip() + "\n")

    def active(self, domain: str) -> str:
        """The selector the domain signs with: DKIM_SELECTOR unless a rotation moved it to
        the second one (``ROOT/dkim/<domain>.selector`` says so)."""
        return self._read_state(domain)[0]

    def other(self, domain: str) -> str:
        """The selector a rotation of the domain publishes its next key under."""
        first, second = self.selectors
        return second if self.active(domain) == first else first

    def rotate(self, domain: str, live: Callable[[str, str], bool]) -> Rotation:
        """One step of a key rotation with a second selector (``roost dkim rotate``).

        1. The domain has one key: a new key is made under the other selector, to publish
           beside the current one; mail is still signed with the current key.
        2. The new key's record is live in DNS (``live(selector, public key)``): the domain
           signs with the new key from now on; the old one stays, as mail already sent
           may still be checked against its record.
        3. The old key is retired: its file is removed (its record can go).
        Until the record is live, step 2 changes nothing (``Rotation.step == "waiting"``).
        """
        if not self.can_rotate():
            raise DkimKeyError(
                f"DKIM_PATH {self.settings.DKIM_PATH!r} does not hold {{selector}}, so a "
                "domain cannot have two keys to rotate"
            )
        active, retiring = self._read_state(domain)
        other = self.other(domain)
        if self.read(domain, active) is None:
            raise DkimKeyError(f"{domain} has no DKIM key: roost dkim generate {domain}")
        if retiring is not None:
            self.delete(domain, retiring)
            self._write_state(domain, active, None)
            return Rotation("retired", active, retiring)
        pending = self.public(domain, other)
        if pending is None:
            self.write(domain, dkim.generate_key(), other)
            return Rotation("published", active, other)
        if not live(other, pending):
            return Rotation("waiting", active, other)
        self._write_state(domain, other, active)
        return Rotation("switched", other, active)

    def path(self, domain: str, selector: str | None = None) -> Path:
        """The key file of ``selector`` (default: the one the domain signs with)."""
        return dkim.key_path(
            self.settings.DKIM_PATH,
            self.settings.ROOT,
            domain,
            selector or self.active(domain),
        )

    def can_rotate(self) -> bool:
        """Two keys of a domain need two files: DKIM_PATH must name the selector."""
        return "{selector}" in self.settings.DKIM_PATH

    def read(self, domain: str, selector: str | None = None) -> str | None:
        """The domain's private key PEM (of ``selector``, default the active one), or None
        when it has none.

        A file that is there but cannot be read or is no usable key raises DkimKeyError
        naming the file: signing must not stop silently.
        """
        path = self.path(domain, selector)
        try:
            # No symbolic link, nor a FIFO left to make root wait: the web's group writes here.
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(path, flags)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DkimKeyError(f"{path}: {exc.strerror}") from None
        with os.fdopen(fd, "r", encoding="ascii", errors="replace") as handle:
            text = handle.read()
        try:
            return dkim.stored_key(text)
        except DkimKeyError as exc:
            raise DkimKeyError(f"{path}: {exc}") from None

    def has(self, domain: str) -> bool:
        return self.path(domain).is_file()

    def public(self, domain: str, selector: str | None = None) -> str | None:
        """The base64 public key of the domain's key (the record's ``p=``), or None."""
        pem = self.read(domain, selector)
        return None if pem is None else dkim.public_key(pem)

    def published(self, domain: str) -> list[tuple[str, str]]:
        """``(selector, public key)`` of every key the domain has: the one it signs with
        first, then the other key of a rotation, if there is one."""
        out = []
        for selector in (self.active(domain), self.other(domain)):
            if selector == self.active(domain) or self.can_rotate():
                public = self.public(domain, selector)
                if public is not None and (selector, public) not in out:
                    out.append((selector, public))
        return out

    def write(self, domain: str, pem: str, selector: str | None = None) -> Path:
        """Replace the domain's key file at once (a new file renamed over the old), 0640:
        the directory's group (the web's, or root's) reads it, nobody else."""
        path = self.path(domain, selector)
        self._replace(path, pem)
        return path

    @staticmethod
    def _replace(path: Path, text: str) -> None:
        if not path.parent.is_dir():
            path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
        try:
            os.fchmod(fd, 0o640)  # whatever the umask
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise

    def generate(self, domain: str) -> str:
        """A new RSA-2048 key written as the domain's key; returns its PEM."""
        pem = dkim.generate_key()
        self.write(domain, pem)
        return pem

    def delete(self, domain: str, selector: str | None = None) -> bool:
        """Remove the domain's key file (of ``selector``; default: every key of the domain
        and its rotation state); False when there was none."""
        if selector is not None:
            try:
                self.path(domain, selector).unlink()
            except FileNotFoundError:
                return False
            return True
        paths = {self.path(domain, s) for s in self.selectors} if self.can_rotate() else set()
        paths.add(self.path(domain))
        removed = False
        for path in paths:
            try:
                path.unlink()
                removed = True
            except FileNotFoundError:
                pass
        self._state(domain).unlink(missing_ok=True)
        return removed

    def signing(
        self, domains: Iterable[tuple[str, str]]
    ) -> dict[str, tuple[str, list[tuple[str, str]]]]:
        """``{signing domain: (active selector, [(selector, PEM), ...])}`` for pairs (domain
        or alternative, domain owning the key): each key the owner has, for Rspamd.

        An alternative signs under its own name with its domain's keys. A key that cannot
        be read is logged and left out (that domain's mail goes unsigned), so one broken
        file does not stop the others.
        """
        keys: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
        for name, owner in domains:
            if owner not in keys:
                active = self.active(owner)
                found: list[tuple[str, str]] = []
                selectors = self.selectors if self.can_rotate() else (active,)
                for selector in selectors:
                    try:
                        pem = self.read(owner, selector)
                    except DkimKeyError as exc:
                        log.error("DKIM key of %s not used: %s", owner, exc)
                        continue
                    if pem is not None:
                        found.append((selector, pem))
                keys[owner] = (active, found)
            if keys[owner][1]:
                out[name] = keys[owner]
        return out


# -- following the store's transactions --------------------------------------------------


def bind(session: Session, settings: Settings) -> None:
    """Let a session's committed domain deletions remove their keys (``work.read`` calls it)."""
    session.info[_SETTINGS] = settings


def stage(session: Session, settings: Settings, domain: str, pem: str | None) -> None:
    """After this transaction commits, write ``pem`` as the domain's key (None: remove it,
    :data:`KEEP`: leave the file alone)."""
    bind(session, settings)
    session.info.setdefault(_STAGED, {})[domain] = pem
    if pem != KEEP:
        # Counted as a change of the store (roost.store.db bumps the generation), so a
        # gate that missed the reload request still sees the new key at its next poll.
        session.info[_STORE_CHANGED] = True


def staged(session: Session, domain: str) -> str | None:
    """The key staged for the domain in this transaction, if a new one is (else None)."""
    value = session.info.get(_STAGED, {}).get(domain)
    return value if isinstance(value, str) and value != KEEP else None


def after_commit(session: Session, settings: Settings, domain: str) -> str | None:
    """The key the domain will have once this transaction commits (PEM, or None)."""
    staged_keys = session.info.get(_STAGED, {})
    if domain in staged_keys:
        if staged_keys[domain] != KEEP:
            return staged_keys[domain]
    elif domain in session.info.get(_DELETED, set()):
        return None
    try:
        return DkimKeys(settings).read(domain)
    except DkimKeyError as exc:
        return f"<unreadable: {exc}>"


@event.listens_for(Session, "after_flush")
def _note_deleted(session: Session, context: Any) -> None:
    for obj in session.deleted:
        if isinstance(obj, Domain):
            session.info.setdefault(_DELETED, set()).add(obj.name)


@event.listens_for(Session, "after_commit")
def _apply(session: Session) -> None:
    staged_keys: dict[str, str | None] = session.info.pop(_STAGED, {})
    deleted: set[str] = session.info.pop(_DELETED, set())
    settings = session.info.get(_SETTINGS)
    if not staged_keys and not deleted:
        return
    if settings is None:
        log.warning("DKIM keys of %s not changed: the session has no settings", sorted(deleted))
        return
    keys = DkimKeys(settings)
    for domain in sorted(deleted - set(staged_keys)):
        if keys.delete(domain):
            log.info("DKIM key of %s removed with the domain", domain)
    for domain, pem in sorted(staged_keys.items()):
        if pem is None:
            keys.delete(domain)
        elif pem != KEEP:
            keys.write(domain, pem)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_STAGED, None)
    session.info.pop(_DELETED, None)
