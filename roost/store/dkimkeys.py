"""The domains' DKIM private keys on disk, where DKIM_PATH says (Mailu keeps them there too).

A key is a file, not a column: ``DKIM_PATH`` (default ``ROOT/dkim/{domain}.{selector}.key``)
filled in with the domain's punycode name and DKIM_SELECTOR, an unencrypted PKCS#8 PEM,
mode ``0600`` root. Nothing but root reads it: the gate (root) reads every key when it
loads its index and writes them into Rspamd's own Redis, from which Rspamd signs
(docs/ARCHITECTURE.md, "Secrets and privileges").

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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from roost.core import dkim
from roost.settings import Settings
from roost.store.models import Domain

__all__ = ["KEEP", "DkimKeyError", "DkimKeys", "after_commit", "bind", "stage", "staged"]

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


class DkimKeys:
    """The key files of one ROOT's domains, named by the stored (punycode) domain name."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def selector(self) -> str:
        return self.settings.DKIM_SELECTOR

    def path(self, domain: str) -> Path:
        return dkim.key_path(
            self.settings.DKIM_PATH, self.settings.ROOT, domain, self.settings.DKIM_SELECTOR
        )

    def read(self, domain: str) -> str | None:
        """The domain's private key PEM, or None when it has none.

        A file that is there but cannot be read or is no usable key raises DkimKeyError
        naming the file: signing must not stop silently.
        """
        path = self.path(domain)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
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

    def public(self, domain: str) -> str | None:
        """The base64 public key of the domain's key (the record's ``p=``), or None."""
        pem = self.read(domain)
        return None if pem is None else dkim.public_key(pem)

    def write(self, domain: str, pem: str) -> Path:
        """Replace the domain's key file at once (a new file renamed over the old), 0600."""
        path = self.path(domain)
        if not path.parent.is_dir():
            path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return path

    def generate(self, domain: str) -> str:
        """A new RSA-2048 key written as the domain's key; returns its PEM."""
        pem = dkim.generate_key()
        self.write(domain, pem)
        return pem

    def delete(self, domain: str) -> bool:
        """Remove the domain's key file; False when there was none."""
        try:
            self.path(domain).unlink()
        except FileNotFoundError:
            return False
        return True

    def signing(self, domains: Iterable[tuple[str, str]]) -> dict[str, str]:
        """``{signing domain: PEM}`` for pairs (domain or alternative, domain owning the key).

        An alternative signs under its own name with its domain's key. A key that cannot
        be read is logged and left out (that domain's mail goes unsigned), so one broken
        file does not stop the others.
        """
        keys: dict[str, str | None] = {}
        out: dict[str, str] = {}
        for name, owner in domains:
            if owner not in keys:
                try:
                    keys[owner] = self.read(owner)
                except DkimKeyError as exc:
                    log.error("DKIM key of %s not used: %s", owner, exc)
                    keys[owner] = None
            pem = keys[owner]
            if pem is not None:
                out[name] = pem
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
