"""``config-import``: Mailu's YAML or JSON into the store, replacing or merging."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from roost.core import dkim
from roost.core.address import AddressError
from roost.core.passwords import hash_password, hash_token, verify_password, verify_token
from roost.core.transport import TransportError
from roost.settings import Settings
from roost.store import dkimkeys
from roost.store.configio.common import (
    FIELDS,
    HIDDEN,
    KEYS,
    KINDS,
    PRUNE,
    REQUIRED,
    SECTIONS,
    ConfigValidationError,
    all_rows,
    default_values,
)
from roost.store.entities import domain as domains
from roost.store.entities import fetch as fetches
from roost.store.entities import relay as relays
from roost.store.entities import user as users
from roost.store.entities.names import (
    ManageError,
    address_in_use,
    check_local,
    domain_name,
    domain_name_use,
    parse_email,
    show_domain,
    show_email,
    strip_scheme,
)
from roost.store.models import Alias, Alternative, Domain, Fetch, Relay, Token, User


def load_document(text: str) -> Any:
    """Parse YAML or JSON (JSON is YAML); a syntax error becomes a validation error."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigValidationError([("<input>", f"not YAML or JSON: {problem}{where}")]) from None
    if document is None:
        raise ConfigValidationError([("<input>", "the input is empty")])
    return document


@dataclass
class ImportResult:
    """What an import changed, per kind of object, and one line per change for ``-v``."""

    created: dict[str, int] = field(default_factory=dict)
    modified: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.modified or self.deleted)

    def summary(self) -> str:
        """``Created: user(2) / Modified: domain(1) / Deleted: alias(3)`` or ``No changes.``"""
        groups = []
        for label, counts in (
            ("Created", self.created),
            ("Modified", self.modified),
            ("Deleted", self.deleted),
        ):
            if counts:
                items = ", ".join(f"{k}({counts[k]})" for k in KINDS if k in counts)
                groups.append(f"{label}: {items}")
        return " / ".join(groups) if groups else "No changes."


def import_config(
    session: Session,
    settings: Settings,
    document: Any,
    *,
    update: bool = False,
    secrets: bool = False,
    check_limits: bool = False,
) -> ImportResult:
    """Apply ``document`` to the session; raise ConfigValidationError listing every problem.

    The caller commits (or rolls back for a dry run); on error nothing must be committed.
    ``secrets`` shows secret values in the change lines instead of ``<hidden>``.
    ``check_limits`` enforces the domains' max_users and max_aliases on new users and
    aliases; off by default, as in Mailu: an import restores a state, it does not grow one.
    """
    before = _snapshot(session, settings)
    importer = _Importer(session, settings, update, check_limits)
    importer.run(document)
    if importer.errors:
        raise ConfigValidationError(importer.errors)
    session.flush()
    return _compare(before, _snapshot(session, settings), secrets)


#: An item without ``dkim_key`` in update mode: the domain keeps its key.
_ABSENT: Any = object()


class _Skip(Exception):
    """The current item has an error already recorded; go on with the next one."""


class _Importer:
    def __init__(
        self, session: Session, settings: Settings, update: bool, check_limits: bool = False
    ) -> None:
        self.session = session
        self.settings = settings
        self.update = update
        self.check_limits = check_limits
        self.defaults = default_values(settings)
        self.errors: list[tuple[str, str]] = []
        self.old_passwords: dict[str, list[str]] = {}
        self.old_tokens: dict[str, list[str]] = {}
        self.old_fetches: dict[tuple[str, Any], str] = {}
        self.old_secrets: dict[str, dict[str, Any]] = {}

    def fail(self, path: str, message: str) -> _Skip:
        self.errors.append((path, message))
        return _Skip()

    def rule(self, path: str, check: Callable[[], object]) -> None:
        """Apply an entity rule; its ManageError becomes this item's error at ``path``."""
        try:
            check()
        except ManageError as exc:
            raise self.fail(path, str(exc)) from None

    def new_values(self, kind: str) -> dict[str, Any]:
        """A new object's columns: each field's default, as the entity declares it."""
        return {f.name: f.stored_default(self.settings) for f in FIELDS[kind] if f.column}

    # -- document and sections -----------------------------------------------------------

    def run(self, document: Any) -> None:
        if not isinstance(document, dict):
            self.fail("<input>", "expected a mapping of sections (" + ", ".join(SECTIONS) + ")")
            return
        sections: dict[str, list[Any]] = {}
        for name, items in document.items():
            if name not in SECTIONS:
                self.fail(str(name), f"unknown section (accepts {', '.join(SECTIONS)})")
            elif items is None:
                sections[name] = []
            elif not isinstance(items, list):
                self.fail(name, "expected a list of items")
            else:
                sections[name] = items
        if self.errors:
            return
        if not self.update:
            self._delete_all(sections)
        for name in SECTIONS:
            if name in sections:
                self._section(name, sections[name])

    def _delete_all(self, sections: dict[str, list[Any]]) -> None:
        """Replace mode: drop the imported types first (dependants first, FK-safe).

        The hashes of the users about to go are remembered, so that a ``hash_password``
        plaintext that still matches keeps its hash and a repeated import changes nothing;
        so are fetch passwords and the users' secret fields (the sealed TOTP secret), so
        that an export without ``--secrets`` (``<hidden>``) can be edited and imported back
        into the same store.
        """
        if "user" in sections or "domain" in sections:
            for user in self.session.scalars(select(User)):
                self.old_passwords[user.email] = [user.password]
                self.old_tokens[user.email] = [t.password for t in user.tokens]
                for fetch in user.fetches:
                    self.old_fetches[(user.email, fetch.id)] = fetch.password
                self.old_secrets[user.email] = {n: getattr(user, n) for n in users.SECRETS}
        for name, model in (("alias", Alias), ("relay", Relay), ("user", User), ("domain", Domain)):
            if name in sections:
                for obj in self.session.scalars(select(model)):
                    self.session.delete(obj)
                self.session.flush()

    def _section(self, section: str, items: list[Any]) -> None:
        key = KEYS[section]
        apply = getattr(self, f"_apply_{section}")
        seen: set[str] = set()
        prune_path: str | None = None
        deletions: list[tuple[str, str]] = []
        for index, item in enumerate(items):
            path = f"{section}[{index}]"
            try:
                if not isinstance(item, dict):
                    raise self.fail(path, "expected a mapping")
                if f"-{key}" in item:
                    if not self.update:
                        raise self.fail(f"{path}.-{key}", "deleting needs --update")
                    if len(item) != 1:
                        raise self.fail(path, f"a '-{key}' item holds nothing else")
                    value = item[f"-{key}"]
                    if value is None:
                        prune_path = path
                    else:
                        stored = self._key(section, value, f"{path}.-{key}")
                        seen.add(stored)
                        deletions.append((stored, f"{path}.-{key}"))
                    continue
                if key not in item:
                    raise self.fail(path, f"{key} is required")
                stored = self._key(section, item[key], f"{path}.{key}")
                if stored in seen:
                    raise self.fail(f"{path}.{key}", f"{item[key]!r} appears more than once")
                seen.add(stored)
                mark = len(self.errors)
                apply(item, stored, path)
                if len(self.errors) == mark:
                    self.session.flush()
            except _Skip:
                continue
        for stored, path in deletions:
            obj = self._find(section, stored)
            if obj is None:
                named = section in ("domain", "relay")
                shown = show_domain(stored) if named else show_email(stored)
                self.fail(path, f"{section} '{shown}' does not exist")
            else:
                self.session.delete(obj)
        if prune_path is not None:
            for obj in all_rows(self.session, section):
                if getattr(obj, key) not in seen:
                    self.session.delete(obj)
        self.session.flush()

    def _key(self, section: str, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise self.fail(path, "expected text")
        try:
            if section in ("domain", "relay"):
                return domain_name(value)
            local, at, domain = value.strip().rpartition("@")
            if not at or not local:
                raise self.fail(path, f"{value!r} is not an address (local@domain)")
            return f"{local.lower()}@{domain_name(domain)}"
        except ManageError as exc:
            raise self.fail(path, str(exc)) from None

    def _find(self, section: str, key: str) -> Any:
        model = {"domain": Domain, "user": User, "alias": Alias, "relay": Relay}[section]
        return self.session.get(model, key)

    # -- fields --------------------------------------------------------------------------

    def _values(
        self,
        item: dict[str, Any],
        path: str,
        kind: str,
        since: int | None = None,
        defaults: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Check the plain fields of an item; ``-field: null`` gives the field's default.

        Each field is parsed, with its rules, as the entity declares it. Returns the parsed
        values; records an error for every bad or unknown field and then skips the item,
        also when errors were recorded for it since ``since``. Fields the entity leaves
        without a parser (keys, merged lists, nested objects, secrets) are left for the
        caller. ``defaults`` overrides declared defaults that depend on the item.
        """
        values: dict[str, Any] = {}
        parsers = {f.name: f.parse for f in FIELDS[kind] if f.parse is not None}
        special = {f.name for f in FIELDS[kind] if f.parse is None}
        allowed = set(parsers) | special | {KEYS.get(kind, "id")}
        reset_defaults = {**self.defaults[kind], **(defaults or {})}
        mark = len(self.errors) if since is None else since
        for name, raw in item.items():
            reset = isinstance(name, str) and name.startswith("-")
            base = name[1:] if reset else name
            where = f"{path}.{name}"
            if base not in allowed:
                self.fail(where, "unknown field")
                continue
            if reset:
                default = reset_defaults.get(base, REQUIRED)
                if not self.update:
                    self.fail(where, "resetting a field needs --update")
                elif raw is not None:
                    self.fail(where, "a '-field' takes only null (reset to the default)")
                elif base == "dkim_key":
                    pass  # back to no key: _apply_domain removes it
                elif isinstance(default, list):
                    values[base] = []
                elif default is REQUIRED or base in special:
                    self.fail(where, "this field has no default to reset to")
                else:
                    values[base] = parsers[base](default)
                continue
            if base in special or base == KEYS.get(kind, "id"):
                continue
            try:
                values[base] = parsers[base](raw)
            except (ManageError, AddressError, TransportError, ValueError) as exc:
                self.fail(where, str(exc))
        if len(self.errors) != mark:
            raise _Skip()
        return values

    def _merge(
        self,
        current: list[str],
        raw: Any,
        path: str,
        normalise: Callable[[str], str],
    ) -> list[str]:
        """Mailu's list notation: ``-value`` removes, ``-prune-`` drops what is not listed."""
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise self.fail(path, "expected a list of text values")
        result: list[str] = []
        removed: list[str] = []
        prune = not self.update
        try:
            for text in (i.strip() for i in items):
                if not text:
                    continue
                if text == PRUNE or text.startswith("-"):
                    if not self.update:
                        raise self.fail(path, f"{text!r}: removing needs --update")
                    if text == PRUNE:
                        prune = True
                    else:
                        removed.append(normalise(text[1:]))
                    continue
                value = normalise(text)
                if value not in result:
                    result.append(value)
        except (ManageError, AddressError) as exc:
            raise self.fail(path, str(exc)) from None
        kept = [] if prune else [v for v in current if v not in result]
        return [v for v in kept + result if v not in removed]

    def _objects(
        self, raw: Any, path: str, keep_unlisted_default: bool
    ) -> tuple[list[tuple[int, dict[str, Any]]], list[int], bool]:
        """Split a nested object list into (index, item) entries, ids to delete, prune flag."""
        if not isinstance(raw, list):
            raise self.fail(path, "expected a list")
        entries: list[tuple[int, dict[str, Any]]] = []
        delete: list[int] = []
        prune = not keep_unlisted_default
        for index, item in enumerate(raw):
            where = f"{path}[{index}]"
            if not isinstance(item, dict):
                raise self.fail(where, "expected a mapping")
            if "-id" in item:
                if not self.update:
                    raise self.fail(f"{where}.-id", "deleting needs --update")
                if item["-id"] is None:
                    prune = True
                elif isinstance(item["-id"], int) and not isinstance(item["-id"], bool):
                    delete.append(item["-id"])
                else:
                    raise self.fail(f"{where}.-id", "expected a number or null")
                continue
            entries.append((index, item))
        return entries, delete, prune

    # -- sections ------------------------------------------------------------------------

    def _apply_domain(self, item: dict[str, Any], name: str, path: str) -> None:
        values = self._values(item, path, "domain")
        new_key = self._dkim_key(item, path)
        domain = self.session.get(Domain, name)
        if domain is None:
            use = domain_name_use(self.session, name)
            if use is not None:
                raise self.fail(f"{path}.name", f"'{show_domain(name)}' is already {use}")
            domain = Domain(name=name, **self.new_values("domain"))
            self.session.add(domain)
        for key, value in values.items():
            setattr(domain, key, value)
        if "alternatives" in item:
            self._alternatives(domain, item["alternatives"], f"{path}.alternatives")
        if new_key is not _ABSENT:
            dkimkeys.stage(self.session, self.settings, name, new_key)

    def _dkim_key(self, item: dict[str, Any], path: str) -> str | None:
        """What the item says of the domain's key, as Mailu's import reads it: a PEM (text
        or list of lines), ``-generate-`` for a new key, ``<hidden>`` to keep the one the
        domain has, empty (or ``-dkim_key: null``) for none; absent keeps the key in
        update mode and means none in replace mode."""
        if "-dkim_key" in item:
            return None  # _values has checked the reset (--update, null)
        if "dkim_key" not in item:
            return _ABSENT if self.update else None
        raw = item["dkim_key"]
        if raw is None or raw == "" or raw == []:
            return None
        if raw == HIDDEN:
            return dkimkeys.KEEP
        if raw == dkim.GENERATE:
            return dkim.generate_key()
        if not isinstance(raw, (str, list)) or (
            isinstance(raw, list) and not all(isinstance(line, str) for line in raw)
        ):
            raise self.fail(f"{path}.dkim_key", "expected a PEM text or a list of its lines")
        try:
            return dkim.normalise_key(raw)
        except dkim.DkimKeyError as exc:
            raise self.fail(f"{path}.dkim_key", str(exc)) from None

    def _alternatives(self, domain: Domain, raw: Any, path: str) -> None:
        current = [a.name for a in domain.alternatives]
        wanted = self._merge(current, raw, path, domain_name)
        for alternative in list(domain.alternatives):
            if alternative.name not in wanted:
                domain.alternatives.remove(alternative)
                self.session.delete(alternative)
        for name in wanted:
            if name in current:
                continue
            use = domain_name_use(self.session, name)
            if use is not None:
                raise self.fail(path, f"'{show_domain(name)}' is already {use}")
            domain.alternatives.append(Alternative(name=name))

    def _apply_user(self, item: dict[str, Any], email: str, path: str) -> None:
        mark = len(self.errors)
        hidden = {n for n in users.SECRETS if item.get(n) == HIDDEN}
        item = {k: v for k, v in item.items() if k not in hidden}
        local, _, domain_part = email.partition("@")
        domain = self._address_domain(local, domain_part, False, f"{path}.email")
        values = self._values(
            item,
            path,
            "user",
            since=mark,
            defaults=(
                None
                if domain is None
                else {"quota_bytes": users.default_quota(self.settings, domain)}
            ),
        )
        user = self.session.get(User, email)
        password = self._password(item, path, email, user)
        if user is None:
            use = address_in_use(self.session, email)
            if use is not None:
                raise self.fail(f"{path}.email", f"'{show_email(email)}' is already {use}")
            if password is None:
                raise self.fail(f"{path}.password", "required for a new user")
            if self.check_limits:
                self.rule(f"{path}.email", lambda: domains.check_room(self.session, domain, User))
            user = User(
                email=email,
                localpart=local,
                domain=domain,
                password=password,
                **users.new_user_values(self.settings, domain),
            )
            self.session.add(user)
        elif password is not None:
            user.password = password
        for name in hidden:
            # ``<hidden>`` keeps the stored secret: the user's own in update mode, in replace
            # mode the one the same user had before (none for a user new to this store).
            if name in self.old_secrets.get(email, {}):
                setattr(user, name, self.old_secrets[email][name])
        for key, value in values.items():
            setattr(user, key, value)
        if "quota_bytes" in values:
            self.rule(
                f"{path}.quota_bytes",
                lambda: users.check_quota(user, domain, values["quota_bytes"]),
            )
        if "reply_startdate" in values or "reply_enddate" in values:
            field = "reply_enddate" if "reply_enddate" in values else "reply_startdate"
            self.rule(f"{path}.{field}", lambda: users.check_reply_dates(user))
        if "totp_enabled" in values or "totp_secret" in values or hidden:
            hint = " (export with --secrets to include it)" if hidden else ""
            self.rule(f"{path}.totp_enabled", lambda: _two_factor(user, hint))
        if "forward_destination" in item:
            where = f"{path}.forward_destination"
            targets = self._merge(
                list(user.forward_destination or []),
                item["forward_destination"],
                where,
                parse_email,
            )
            self.rule(where, lambda: users.check_forward_length(user, targets))
            user.forward_destination = targets
        if "manager_of" in item:
            self._managers(user, item["manager_of"], f"{path}.manager_of")
        if "tokens" in item:
            self._tokens(user, item["tokens"], f"{path}.tokens")
        if "fetches" in item:
            self._fetches(user, item["fetches"], f"{path}.fetches")

    def _address_domain(self, local: str, domain: str, wildcard: bool, path: str) -> Domain:
        """Check an item's address; errors are recorded for ``_values`` to skip the item."""
        try:
            check_local(local, wildcard=wildcard)
        except ManageError as exc:
            self.fail(path, str(exc))
        found = self.session.get(Domain, domain)
        if found is None:
            self.fail(path, f"domain '{show_domain(domain)}' does not exist")
        return found  # type: ignore[return-value]  # None only with an error recorded

    def _password(
        self, item: dict[str, Any], path: str, email: str, user: User | None
    ) -> str | None:
        """The hash to store: given as a hash, or hashed from plaintext (``hash_password``).

        A plaintext that still verifies keeps the stored hash, so re-running the same
        import changes nothing (Mailu does the same).
        """
        hashed = item.get("hash_password", False)
        if not isinstance(hashed, bool):
            raise self.fail(f"{path}.hash_password", "expected true or false")
        if "password" not in item:
            if hashed:
                raise self.fail(f"{path}.hash_password", "needs a password")
            return None
        raw = item["password"]
        if not isinstance(raw, str) or not raw:
            raise self.fail(f"{path}.password", "expected a non-empty text")
        if hashed:
            candidates = [user.password] if user is not None else self.old_passwords.get(email, [])
            return _rehash(raw, candidates, verify_password, hash_password)
        try:
            return strip_scheme(raw)
        except ManageError as exc:
            raise self.fail(f"{path}.password", str(exc)) from None

    def _managers(self, user: User, raw: Any, path: str) -> None:
        current = [d.name for d in user.manager_of]
        wanted = self._merge(current, raw, path, domain_name)
        domains = []
        for name in wanted:
            domain = self.session.get(Domain, name)
            if domain is None:
                raise self.fail(path, f"domain '{show_domain(name)}' does not exist")
            domains.append(domain)
        user.manager_of = domains

    def _tokens(self, user: User, raw: Any, path: str) -> None:
        entries, delete, prune = self._objects(raw, path, keep_unlisted_default=self.update)
        kept: set[int] = set()
        for index, item in entries:
            where = f"{path}[{index}]"
            values = self._values(item, where, "token")
            token = self._child(user.tokens, Token, item, where)
            hashed = item.get("hash_password", False)
            secret = item.get("password")
            if not isinstance(hashed, bool):
                raise self.fail(f"{where}.hash_password", "expected true or false")
            if secret is not None and (not isinstance(secret, str) or not secret):
                raise self.fail(f"{where}.password", "expected a non-empty text")
            if token is None and secret is not None and self.update:
                token = next(
                    (
                        t
                        for t in user.tokens
                        if (verify_token(t.password, secret)[0] if hashed else t.password == secret)
                    ),
                    None,
                )
            if token is None:
                if secret is None:
                    raise self.fail(f"{where}.password", "required for a new token")
                token = Token(password="", ip=[], comment="")
                if isinstance(item.get("id"), int):
                    token.id = item["id"]
                user.tokens.append(token)
            if secret is not None and hashed:
                candidates = (
                    [token.password] if token.password else self.old_tokens.get(user.email, [])
                )
                token.password = _rehash(secret, candidates, verify_token, hash_token)
            elif secret is not None:
                token.password = secret
            for key, value in values.items():
                setattr(token, key, value)
            self.session.flush()
            kept.add(token.id)
        self._drop_children(user.tokens, kept, delete, prune, path)

    def _fetches(self, user: User, raw: Any, path: str) -> None:
        entries, delete, prune = self._objects(raw, path, keep_unlisted_default=self.update)
        kept: set[int] = set()
        for index, item in entries:
            where = f"{path}[{index}]"
            values = self._values(item, where, "fetch")
            fetch = self._child(user.fetches, Fetch, item, where)
            secret = item.get("password")
            if fetch is None and self.update:
                fetch = next(
                    (
                        f
                        for f in user.fetches
                        if tuple(getattr(f, k) for k in fetches.MATCH)
                        == tuple(values.get(k) for k in fetches.MATCH)
                    ),
                    None,
                )
            if secret is not None and (not isinstance(secret, str) or not secret):
                raise self.fail(f"{where}.password", "expected a non-empty text")
            if secret == HIDDEN and fetch is None:
                secret = self.old_fetches.get((user.email, item.get("id")), HIDDEN)
            if fetch is None:
                missing = [k for k in fetches.NEEDED if k not in values]
                if secret in (None, HIDDEN):
                    missing.append("password")
                if missing:
                    raise self.fail(
                        where,
                        "a new fetch needs "
                        + ", ".join(missing)
                        + (
                            " (export with --secrets to include passwords)"
                            if secret == HIDDEN
                            else ""
                        ),
                    )
                fetch = Fetch(**self.new_values("fetch"))
                if isinstance(item.get("id"), int):
                    fetch.id = item["id"]
                user.fetches.append(fetch)
            if secret is not None and secret != HIDDEN:
                fetch.password = secret
            for key, value in values.items():
                setattr(fetch, key, value)
            self.session.flush()
            kept.add(fetch.id)
        self._drop_children(user.fetches, kept, delete, prune, path)

    def _child(
        self,
        current: list[Any],
        model: type[Token] | type[Fetch],
        item: dict[str, Any],
        path: str,
    ) -> Any:
        """The token or fetch an item's ``id`` names: this user's, or a new one with that id."""
        if "id" not in item:
            return None
        ident = item["id"]
        if not isinstance(ident, int) or isinstance(ident, bool) or ident < 1:
            raise self.fail(f"{path}.id", "expected a positive number")
        for obj in current:
            if obj.id == ident:
                if not self.update:
                    raise self.fail(f"{path}.id", f"{ident} appears more than once")
                return obj
        other: Any = self.session.get(model, ident)
        if other is not None:
            raise self.fail(f"{path}.id", f"{ident} belongs to '{show_email(other.user_email)}'")
        return None

    def _drop_children(
        self, current: list[Any], kept: set[int], delete: list[int], prune: bool, path: str
    ) -> None:
        for ident in delete:
            if not any(obj.id == ident for obj in current):
                self.fail(path, f"no {ident} to delete")
        for obj in list(current):
            if obj.id in delete or (prune and obj.id not in kept):
                current.remove(obj)
                self.session.delete(obj)

    def _apply_alias(self, item: dict[str, Any], email: str, path: str) -> None:
        alias = self.session.get(Alias, email)
        wildcard = item.get("wildcard", alias.wildcard if alias is not None else False)
        if not isinstance(wildcard, bool):
            raise self.fail(f"{path}.wildcard", "expected true or false")
        mark = len(self.errors)
        local, _, domain_part = email.partition("@")
        domain = self._address_domain(local, domain_part, wildcard, f"{path}.email")
        values = self._values(item, path, "alias", since=mark)
        owner = values.get("owner_email")
        if owner is not None and self.session.get(User, owner) is None:
            raise self.fail(f"{path}.owner_email", f"user '{show_email(owner)}' does not exist")
        if alias is None:
            use = address_in_use(self.session, email)
            if use is not None:
                raise self.fail(f"{path}.email", f"'{show_email(email)}' is already {use}")
            if "destination" not in item:
                raise self.fail(f"{path}.destination", "required for a new alias")
            if self.check_limits:
                self.rule(f"{path}.email", lambda: domains.check_room(self.session, domain, Alias))
            alias = Alias(email=email, localpart=local, domain=domain, destination=[])
            self.session.add(alias)
        if "destination" in item:
            where = f"{path}.destination"
            destination = self._merge(
                list(alias.destination or []), item["destination"], where, parse_email
            )
            if not destination:
                raise self.fail(where, "an alias needs at least one destination address")
            alias.destination = destination
        for key, value in values.items():
            setattr(alias, key, value)

    def _apply_relay(self, item: dict[str, Any], name: str, path: str) -> None:
        values = self._values(item, path, "relay")
        if "smtp" in values:
            self.rule(f"{path}.smtp", lambda: relays.check_target(name, values["smtp"]))
        relay = self.session.get(Relay, name)
        if relay is None:
            use = domain_name_use(self.session, name)
            if use is not None:
                raise self.fail(f"{path}.name", f"'{show_domain(name)}' is already {use}")
            relay = Relay(name=name, smtp="", comment="")
            self.session.add(relay)
        for key, value in values.items():
            setattr(relay, key, value)


def _two_factor(user: User, hint: str) -> None:
    """The store's rule (two-factor on needs a secret), saying why a secret may be missing."""
    try:
        users.check_two_factor(user)
    except ManageError as exc:
        raise ManageError(f"{exc}{hint}") from None


def _rehash(
    plain: str,
    candidates: Iterable[str],
    verify: Callable[[str, str], tuple[bool, str | None]],
    make: Callable[[str], str],
) -> str:
    """The first stored hash ``plain`` verifies against, else a new one (stable re-imports)."""
    for stored in candidates:
        if verify(stored, plain)[0]:
            return stored
    return make(plain)


# ======================================================================== change counting

_IGNORED_COLUMNS = {"created_at", "updated_at", "quota_bytes_used"}
_SECRET_COLUMNS = {"password", "dkim_key", *users.SECRETS}


def _snapshot(session: Session, settings: Settings) -> dict[tuple[str, str], dict[str, Any]]:
    """Every object's column values by (kind, key), to count what an import changed; a
    domain's DKIM key (a file) counts as a value, as it will be after the commit."""
    session.flush()
    snapshot: dict[tuple[str, str], dict[str, Any]] = {}
    models: tuple[tuple[str, Any, Callable[[Any], str]], ...] = (
        ("domain", Domain, lambda o: show_domain(o.name)),
        ("alternative", Alternative, lambda o: show_domain(o.name)),
        ("user", User, lambda o: show_email(o.email)),
        ("token", Token, lambda o: f"{show_email(o.user_email)} #{o.id}"),
        ("fetch", Fetch, lambda o: f"{show_email(o.user_email)} #{o.id}"),
        ("alias", Alias, lambda o: show_email(o.email)),
        ("relay", Relay, lambda o: show_domain(o.name)),
    )
    for kind, model, key in models:
        for obj in session.scalars(select(model)):
            values = {
                column.key: _comparable(column.key, getattr(obj, column.key))
                for column in model.__table__.columns
                if column.key not in _IGNORED_COLUMNS
            }
            if kind == "user":
                values["manager_of"] = sorted(d.name for d in obj.manager_of)
            if kind == "domain":
                values["dkim_key"] = dkimkeys.after_commit(session, settings, obj.name)
            snapshot[(kind, key(obj))] = values
    return snapshot


def _comparable(name: str, value: Any) -> Any:
    """Values as the store keeps them: lists sorted and unique, no comment the same as ''."""
    if isinstance(value, list):
        return sorted(set(value))
    if value is None and name in ("comment", "smtp"):
        return ""
    return value


def _compare(
    before: dict[tuple[str, str], dict[str, Any]],
    after: dict[tuple[str, str], dict[str, Any]],
    secrets: bool,
) -> ImportResult:
    result = ImportResult()

    def count(counter: dict[str, int], kind: str) -> None:
        counter[kind] = counter.get(kind, 0) + 1

    def shown(name: str, value: Any) -> str:
        return HIDDEN if name in _SECRET_COLUMNS and not secrets else repr(value)

    order = {kind: index for index, kind in enumerate(KINDS)}
    for kind, key in sorted(set(before) | set(after), key=lambda k: (order[k[0]], k[1])):
        old, new = before.get((kind, key)), after.get((kind, key))
        if old is None:
            count(result.created, kind)
            result.changes.append(f"Created {kind}: {key!r}")
        elif new is None:
            count(result.deleted, kind)
            result.changes.append(f"Deleted {kind}: {key!r}")
        else:
            diffs = [name for name in new if old.get(name) != new[name]]
            if diffs:
                count(result.modified, kind)
                for name in diffs:
                    result.changes.append(
                        f"Modified {kind}: {key!r} {name}: "
                        f"{shown(name, old.get(name))} -> {shown(name, new[name])}"
                    )
    return result
