"""``config-export``: the store as Mailu's YAML or JSON (reference §6.2)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import yaml
from sqlalchemy.orm import Session

from roost.settings import Settings
from roost.store.configio.common import (
    HIDDEN,
    KEYS,
    REQUIRED,
    SECTIONS,
    all_rows,
    default_values,
)
from roost.store.manage import ManageError, show_domain, show_email
from roost.store.models import Alias, Domain, Fetch, Relay, Token, User


def _date(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _domain_record(domain: Domain) -> dict[str, Any]:
    return {
        "name": show_domain(domain.name),
        "alternatives": sorted(show_domain(a.name) for a in domain.alternatives),
        "anonmail_enabled": domain.anonmail_enabled,
        "comment": domain.comment or "",
        "max_aliases": domain.max_aliases,
        "max_quota_bytes": domain.max_quota_bytes,
        "max_users": domain.max_users,
        "signup_enabled": domain.signup_enabled,
    }


def _token_record(token: Token) -> dict[str, Any]:
    return {
        "id": token.id,
        "comment": token.comment or "",
        "ip": list(token.ip or []),
        "password": token.password,
    }


def _fetch_record(fetch: Fetch, secrets: bool) -> dict[str, Any]:
    return {
        "id": fetch.id,
        "comment": fetch.comment or "",
        "error": fetch.error,
        "folders": list(fetch.folders or []),
        "host": fetch.host,
        "invisible": fetch.invisible,
        "keep": fetch.keep,
        "last_check": None if fetch.last_check is None else fetch.last_check.isoformat(),
        "password": fetch.password if secrets else HIDDEN,
        "port": fetch.port,
        "protocol": fetch.protocol,
        "scan": fetch.scan,
        "tls": fetch.tls,
        "username": fetch.username,
    }


def _user_record(user: User) -> dict[str, Any]:
    return {
        "email": show_email(user.email),
        "allow_spoofing": user.allow_spoofing,
        "change_pw_next_login": user.change_pw_next_login,
        "comment": user.comment or "",
        "displayed_name": user.displayed_name or "",
        "enable_imap": user.enable_imap,
        "enable_pop": user.enable_pop,
        "enabled": user.enabled,
        "forward_destination": [show_email(a) for a in user.forward_destination or []],
        "forward_enabled": user.forward_enabled,
        "forward_keep": user.forward_keep,
        "global_admin": user.global_admin,
        "manager_of": sorted(show_domain(d.name) for d in user.manager_of),
        "password": user.password,
        "quota_bytes": user.quota_bytes,
        "reply_body": user.reply_body,
        "reply_enabled": user.reply_enabled,
        "reply_enddate": _date(user.reply_enddate),
        "reply_startdate": _date(user.reply_startdate),
        "reply_subject": user.reply_subject,
        "spam_enabled": user.spam_enabled,
        "spam_mark_as_read": user.spam_mark_as_read,
        "spam_threshold": user.spam_threshold,
    }


def _alias_record(alias: Alias) -> dict[str, Any]:
    return {
        "email": show_email(alias.email),
        "comment": alias.comment or "",
        "destination": [show_email(a) for a in alias.destination or []],
        "disabled": alias.disabled,
        "hostname": alias.hostname,
        "owner_email": None if alias.owner_email is None else show_email(alias.owner_email),
        "wildcard": alias.wildcard,
    }


def _relay_record(relay: Relay) -> dict[str, Any]:
    return {
        "name": show_domain(relay.name),
        "comment": relay.comment or "",
        "smtp": relay.smtp or "",
    }


_FULL_ONLY = {"fetch": {"last_check", "error"}}


def _trim(
    record: dict[str, Any], defaults: dict[str, Any], kind: str, full: bool, forced: set[str]
) -> dict[str, Any]:
    """Drop defaults (unless ``full``) and order the item: key first, then alphabetical."""
    first = next(iter(record))
    out = {first: record[first]}
    for name in sorted(record):
        if name == first:
            continue
        default = defaults.get(name, REQUIRED)
        if name in forced or default is REQUIRED:
            out[name] = record[name]
        elif name in _FULL_ONLY.get(kind, ()):
            if full:
                out[name] = record[name]
        elif full or record[name] != default:
            out[name] = record[name]
    return out


def _parse_filters(filters: Iterable[str]) -> dict[str, set[str] | None]:
    """``user`` selects a section, ``user.spam_threshold`` one attribute of it."""
    chosen: dict[str, set[str] | None] = {}
    for text in filters:
        section, _, attribute = text.partition(".")
        if section not in SECTIONS:
            raise ManageError(
                f"filter {text!r}: unknown section {section!r} (accepts {', '.join(SECTIONS)})"
            )
        if not attribute:
            chosen[section] = None
            continue
        fields = _EXPORT_FIELDS[section]
        if attribute not in fields:
            raise ManageError(
                f"filter {text!r}: {section} has no attribute {attribute!r} "
                f"(accepts {', '.join(sorted(fields))})"
            )
        if section not in chosen:
            chosen[section] = set()
        selected = chosen[section]
        if selected is not None:
            selected.add(attribute)
    return chosen


_EXPORT_FIELDS = {
    "domain": {
        "name",
        "alternatives",
        "anonmail_enabled",
        "comment",
        "max_aliases",
        "max_quota_bytes",
        "max_users",
        "signup_enabled",
    },
    "user": {
        "email",
        "allow_spoofing",
        "change_pw_next_login",
        "comment",
        "displayed_name",
        "enable_imap",
        "enable_pop",
        "enabled",
        "fetches",
        "forward_destination",
        "forward_enabled",
        "forward_keep",
        "global_admin",
        "manager_of",
        "password",
        "quota_bytes",
        "reply_body",
        "reply_enabled",
        "reply_enddate",
        "reply_startdate",
        "reply_subject",
        "spam_enabled",
        "spam_mark_as_read",
        "spam_threshold",
        "tokens",
    },
    "alias": {"email", "comment", "destination", "disabled", "hostname", "owner_email", "wildcard"},
    "relay": {"name", "comment", "smtp"},
}


def export_config(
    session: Session,
    settings: Settings,
    *,
    full: bool = False,
    secrets: bool = False,
    filters: Iterable[str] = (),
) -> dict[str, list[dict[str, Any]]]:
    """The configuration as a document (dict of section lists), ready to dump.

    Attributes named in ``filters`` are shown even when they hold their default, as in
    Mailu; other attributes of a filtered section are left out.
    """
    chosen = _parse_filters(filters) or dict.fromkeys(SECTIONS)
    defaults = default_values(settings)
    document: dict[str, list[dict[str, Any]]] = {}
    for section in SECTIONS:
        if section not in chosen:
            continue
        attributes = chosen[section]
        items = []
        for obj in all_rows(session, section):
            record = _full_record(obj, section, full, secrets, defaults)
            trimmed = _trim(record, defaults[section], section, full, attributes or set())
            if attributes is not None:
                key = KEYS[section]
                trimmed = {k: v for k, v in trimmed.items() if k == key or k in attributes}
            items.append(trimmed)
        document[section] = items
    return document


def _full_record(
    obj: Any, section: str, full: bool, secrets: bool, defaults: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    if section == "domain":
        return _domain_record(obj)
    if section == "alias":
        return _alias_record(obj)
    if section == "relay":
        return _relay_record(obj)
    record = _user_record(obj)
    record["tokens"] = [
        _trim(_token_record(t), defaults["token"], "token", full, set())
        for t in sorted(obj.tokens, key=lambda t: t.id)
    ]
    record["fetches"] = [
        _trim(_fetch_record(f, secrets), defaults["fetch"], "fetch", full, set())
        for f in sorted(obj.fetches, key=lambda f: f.id)
    ]
    return record


class _Dumper(yaml.SafeDumper):
    """Block style with list items indented under their key, as Mailu writes its YAML."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(document: dict[str, list[dict[str, Any]]]) -> str:
    """YAML with a blank line between sections; ``{}`` for an empty selection."""
    if not document:
        return "{}\n"
    parts = [
        yaml.dump(
            {section: items},
            Dumper=_Dumper,
            default_flow_style=False,
            sort_keys=False,
            allow_unicode=True,
            width=1_000_000,
        )
        for section, items in document.items()
    ]
    return "\n".join(parts)


def dump_json(document: dict[str, list[dict[str, Any]]]) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False) + "\n"
