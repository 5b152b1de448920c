"""``config-export``: the store as Mailu's YAML or JSON (Mailu's ``flask mailu config-export``,
core/admin/mailu/schemas.py), each item built from its entity's field declarations."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import yaml
from sqlalchemy.orm import Session

from roost.settings import Settings
from roost.store.configio.common import (
    FIELDS,
    HIDDEN,
    KEYS,
    REQUIRED,
    SECTIONS,
    all_rows,
    default_values,
    exported,
)
from roost.store.dkimkeys import DkimKeyError, DkimKeys
from roost.store.entities import ManageError, user


def _record(obj: Any, kind: str) -> dict[str, Any]:
    """Every exported field of ``obj``, the key first, as the entity declares them."""
    return {f.name: f.value(obj) for f in exported(kind)}


def _full_only(kind: str) -> set[str]:
    return {f.name for f in FIELDS[kind] if f.full_only}


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
        elif name in _full_only(kind):
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
        fields = {f.name for f in exported(section)}
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
    keys = DkimKeys(settings)
    defaults = default_values(settings)
    document: dict[str, list[dict[str, Any]]] = {}
    for section in SECTIONS:
        if section not in chosen:
            continue
        attributes = chosen[section]
        items = []
        for obj in all_rows(session, section):
            record = _full_record(obj, section, full, secrets, defaults)
            if section == "domain":
                record["dkim_key"] = _dkim_key(keys, obj.name, secrets)
            trimmed = _trim(record, defaults[section], section, full, attributes or set())
            if attributes is not None:
                key = KEYS[section]
                trimmed = {k: v for k, v in trimmed.items() if k == key or k in attributes}
            items.append(trimmed)
        document[section] = items
    return document


def _dkim_key(keys: DkimKeys, domain: str, secrets: bool) -> str:
    """The domain's private key (a file, not a column): ``<hidden>`` unless ``secrets``,
    empty without a key, as Mailu exports it."""
    try:
        pem = keys.read(domain)
    except DkimKeyError as exc:
        raise ManageError(f"DKIM key of '{domain}': {exc}") from None
    if pem is None:
        return ""
    return pem if secrets else HIDDEN


def _full_record(
    obj: Any, section: str, full: bool, secrets: bool, defaults: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    record = _record(obj, section)
    if section != "user":
        return record
    if not secrets:
        for name in user.SECRETS:
            if record[name] is not None:
                record[name] = HIDDEN
    record["tokens"] = [
        _trim(_record(t, "token"), defaults["token"], "token", full, set())
        for t in sorted(obj.tokens, key=lambda t: t.id)
    ]
    fetches = []
    for item in sorted(obj.fetches, key=lambda f: f.id):
        fetch = _record(item, "fetch")
        if not secrets:
            fetch["password"] = HIDDEN
        fetches.append(_trim(fetch, defaults["fetch"], "fetch", full, set()))
    record["fetches"] = fetches
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
