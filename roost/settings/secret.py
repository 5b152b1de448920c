"""The SECRET_KEY check, made before anything that signs or verifies with the key starts.

SECRET_KEY keys the SRS addresses the gate hands out and reverses (``core/srs.py``) and the
password fingerprints in the log. Mailu's example value ``changeMe`` is public: with it,
anyone can mint an SRS address that the gate reverses to any outside address, which makes
the server an open relay. So ``roost up``, ``roost gate`` and ``roost init`` refuse it, an
empty key and a short one. Commands that only change the store (``roost user``, ``alias``,
``config-export`` ...) sign nothing and keep working, so a server can still be managed
while its key is being fixed.

Why 16 characters: Mailu's documentation asks for a 16-character random key (``pwgen 16
1``, https://mailu.io/master/configuration.html) and Mailu's setup utility writes 16
characters of A-Z and 0-9 (about 82 bits), so every key made the Mailu way passes and a
moved server keeps its key, and with it the SRS addresses already out in the world.
setup.sh writes 32 hex digits (128 bits).
"""

from __future__ import annotations

from pathlib import Path

from roost.settings.model import Settings
from roost.settings.parsers import SettingsError

__all__ = [
    "API_TOKEN_MIN_LENGTH",
    "SECRET_KEY_MIN_LENGTH",
    "api_token_problem",
    "check_api_token",
    "check_secret_key",
    "check_start_secrets",
    "secret_key_problem",
]

SECRET_KEY_MIN_LENGTH = 16
#: Same floor for API_TOKEN: Mailu's setup utility writes 32 random characters, so a token
#: made the Mailu way passes.
API_TOKEN_MIN_LENGTH = 16
_TOKEN_EXAMPLES = {"changeme", "apitoken", "api_token", "secret", "token"}

#: Where the advice points when the caller does not say which settings file it read.
_DEFAULT_FILE = Path("/etc/roost/mailu.env")

#: Shell syntax that a settings file does not expand: a value holding it is a command
#: pasted as text, the same for every server that pasted it.
_UNEXPANDED = ("$(", "`", "${")


def secret_key_problem(key: str) -> str | None:
    """What is wrong with ``key`` as a SECRET_KEY, or None when it will do."""
    if key.lower() == Settings.SECRET_KEY.lower():
        return f"is Mailu's public example {Settings.SECRET_KEY!r}"
    if not key:
        return "is empty"
    if any(mark in key for mark in _UNEXPANDED):
        return "holds shell syntax that a settings file does not run"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"has {len(key)} characters, fewer than {SECRET_KEY_MIN_LENGTH}"
    return None


def check_secret_key(settings: Settings, env_file: Path | None = None) -> None:
    """Refuse a SECRET_KEY that others know or can guess, with one line saying what to do.

    The key itself is never shown: a weak key may still be someone's real one.
    """
    problem = secret_key_problem(settings.SECRET_KEY)
    if problem is None:
        return
    where = env_file or _DEFAULT_FILE
    raise SettingsError(
        f"SECRET_KEY {problem}: a key others can know lets them forge SRS addresses and "
        f"relay through this server; run `openssl rand -hex 16` and put SECRET_KEY=<its "
        f"output> in {where}"
    )


def api_token_problem(token: str) -> str | None:
    """What is wrong with ``token`` as an API_TOKEN, or None when it will do."""
    if not token:
        return "is empty"
    if token.lower() in _TOKEN_EXAMPLES:
        return "is an example value"
    if any(ch.isspace() for ch in token):
        return "contains white space"
    if len(token) < API_TOKEN_MIN_LENGTH:
        return f"has {len(token)} characters, fewer than {API_TOKEN_MIN_LENGTH}"
    return None


def check_api_token(settings: Settings, env_file: Path | None = None) -> None:
    """With API=true, refuse an API_TOKEN that others know or can guess; never shown."""
    if not settings.API:
        return
    problem = api_token_problem(settings.API_TOKEN)
    if problem is None:
        return
    where = env_file or _DEFAULT_FILE
    raise SettingsError(
        f"API_TOKEN {problem}: the API token can do anything a global administrator can; "
        f"run `openssl rand -hex 16` and put API_TOKEN=<its output> in {where}"
    )


def check_start_secrets(settings: Settings, env_file: Path | None = None) -> None:
    """Every secret check made before a stack (or its gate) starts."""
    check_secret_key(settings, env_file)
    check_api_token(settings, env_file)
