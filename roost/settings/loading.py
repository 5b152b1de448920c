"""Build :class:`Settings` from a ``mailu.env`` file, the environment and overrides.

The table in :mod:`roost.settings.model` says which names exist and how each parses; this
module only gathers the raw strings (file, then environment, then overrides, with Mailu's
``X_FILE`` indirection) and hands each to its row's parser.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from roost.settings.model import HTTP_PORTS, Settings, declared
from roost.settings.parsers import SettingsError

__all__ = ["load_settings", "read_env_file"]


def read_env_file(path: Path) -> dict[str, str]:
    """Read a ``mailu.env`` file: KEY=VALUE lines, ``#`` comments, optional quotes.

    Nothing is expanded: ``$(...)`` or ``$VAR`` in a value is kept as written, as Docker
    Compose's ``env_file`` and systemd's ``EnvironmentFile`` keep it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"settings file {path}: does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"settings file {path}: cannot be read ({exc})") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export ") :].lstrip()
        name, sep, value = stripped.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SettingsError(f"settings file {path}, line {number}: expected NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[name] = value
    return values


def _recognised(name: str, rows: Mapping[str, object]) -> bool:
    """A declared name, its ``_FILE`` form, or one of Mailu's ``*_ADDRESS`` host overrides."""
    if name in rows or name.endswith("_ADDRESS"):
        return True
    # Mailu's own POSTFIX_LOG_FILE ends in _FILE too: it is caught by the line above.
    return name.endswith("_FILE") and name[:-5] in rows


def load_settings(
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings: the file first, then the environment, then explicit overrides.

    Every setting ``X`` may be read from the file named by ``X_FILE`` (as Mailu's admin
    does for all of its settings). Unknown names in the file are refused: they are typos.
    """
    environ = os.environ if environ is None else environ
    rows = declared()
    parsed = {name: row for name, row in rows.items() if row.parse is not None}
    raw: dict[str, str] = {}
    if env_file is not None:
        file_values = read_env_file(env_file)
        for name in file_values:
            if not _recognised(name, rows):
                raise SettingsError(
                    f"settings file {env_file}: unknown setting {name} "
                    "(see docs/configuration.md for the names Roost reads)"
                )
        raw.update(file_values)
    for name in parsed:
        if name in environ:
            raw[name] = environ[name]
        file_name = f"{name}_FILE"
        if file_name in environ:
            raw[file_name] = environ[file_name]
    raw.update(overrides or {})

    for name in list(raw):
        if name.endswith("_FILE") and name[:-5] in parsed:
            try:
                raw[name[:-5]] = Path(raw[name]).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SettingsError(
                    f"{name}={raw[name]!r}: cannot be read ({exc.strerror})"
                ) from None

    values = {}
    for name in sorted(raw):
        parse = parsed[name].parse if name in parsed else None
        if parse is not None:
            values[name] = parse(name, raw[name])
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _check_consistency(settings: Settings) -> None:
    """Rules that involve more than one setting."""
    server = settings.DB_FLAVOR != "sqlite" and not settings.SQLALCHEMY_DATABASE_URI
    if server and not settings.DB_HOST:
        raise SettingsError("DB_HOST='': accepts the database server's host name")
    if bool(settings.RELAYUSER) != bool(settings.RELAYPASSWORD):
        raise SettingsError("RELAYUSER/RELAYPASSWORD: set both or neither")
    if settings.RELAYUSER and not settings.RELAYHOST:
        raise SettingsError("RELAYUSER: needs RELAYHOST, the smarthost to log in to")
    if settings.INITIAL_ADMIN_ACCOUNT and not settings.INITIAL_ADMIN_DOMAIN:
        raise SettingsError("INITIAL_ADMIN_DOMAIN='': needed with INITIAL_ADMIN_ACCOUNT")
    if settings.webmail_path and not settings.webmail_path.startswith("/"):
        raise SettingsError(
            f"WEB_WEBMAIL={settings.WEB_WEBMAIL!r}: with WEBMAIL=roundcube it is the path "
            "Roundcube is served under on this site, such as /webmail"
        )
    _check_real_ip(settings)


def _check_real_ip(settings: Settings) -> None:
    """The client's address is taken from a proxy only if the proxy is named."""
    if settings.PROXY_PROTOCOL and not settings.REAL_IP_FROM:
        raise SettingsError(
            "PROXY_PROTOCOL: needs REAL_IP_FROM, the addresses of the proxies allowed to "
            "send the PROXY header (e.g. REAL_IP_FROM=192.0.2.10)"
        )
    if settings.REAL_IP_HEADER and not settings.REAL_IP_FROM:
        raise SettingsError(
            f"REAL_IP_HEADER={settings.REAL_IP_HEADER}: needs REAL_IP_FROM, the addresses of "
            "the proxies allowed to send it; without it the header is never believed"
        )
    http = [str(port) for port in HTTP_PORTS if port in settings.PROXY_PROTOCOL]
    if settings.REAL_IP_HEADER and http:
        raise SettingsError(
            f"REAL_IP_HEADER={settings.REAL_IP_HEADER}: must be empty while PROXY_PROTOCOL "
            f"includes port {' and '.join(http)}: the PROXY header names the client there"
        )
