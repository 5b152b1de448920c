"""Typed settings read from the environment and a ``mailu.env``-style file.

Names, defaults and boolean rules follow Mailu's ``mailu.env``
(https://mailu.io/master/configuration.html) so that a user moving from Mailu recognises
every variable. Roost is stricter in one way: a value that does not parse stops the command
with one line that names the variable and what it accepts, instead of being carried along
as a string.

A new setting is one field of :class:`Settings` in ``model.py`` (default, parser, section,
meaning); the loader and docs/configuration.md's tables follow from it.
"""

from roost.settings.loading import load_settings, read_env_file
from roost.settings.model import (
    DB_FLAVORS,
    KNOWN_PORTS,
    LOG_LEVELS,
    MAILU_ONLY,
    SECRET_SETTINGS,
    TLS_FLAVORS_AVAILABLE,
    TLS_FLAVORS_LATER,
    TLS_PORTS,
    Setting,
    Settings,
    declarations,
)
from roost.settings.parsers import SettingsError
from roost.settings.secret import (
    SECRET_KEY_MIN_LENGTH,
    check_api_token,
    check_secret_key,
    check_start_secrets,
)

__all__ = [
    "DB_FLAVORS",
    "KNOWN_PORTS",
    "LOG_LEVELS",
    "MAILU_ONLY",
    "SECRET_KEY_MIN_LENGTH",
    "SECRET_SETTINGS",
    "TLS_FLAVORS_AVAILABLE",
    "TLS_FLAVORS_LATER",
    "TLS_PORTS",
    "Setting",
    "Settings",
    "SettingsError",
    "check_api_token",
    "check_secret_key",
    "check_start_secrets",
    "declarations",
    "load_settings",
    "read_env_file",
]
