"""No default secret: what signs with SECRET_KEY refuses a key others know or can guess.

With Mailu's public example key anyone can mint SRS addresses the gate reverses to any
outside address (an open relay), so ``roost up``, ``roost gate`` and ``roost init`` stop with
one line; the management verbs, which sign nothing, keep working.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from roost.bootstrap.install import new_settings, write_settings
from roost.settings import SettingsError, check_secret_key, load_settings
from tests.unit.test_cli_support import REPO, make_stack

GOOD = "0123456789abcdef0123456789abcdef"


def refusal(key: str, env_file: Path | None = None) -> str:
    settings = load_settings(environ={"SECRET_KEY": key})
    with pytest.raises(SettingsError) as error:
        check_secret_key(settings, env_file)
    return str(error.value)


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("changeMe", "SECRET_KEY is Mailu's public example 'changeMe':"),
        ("CHANGEME", "SECRET_KEY is Mailu's public example 'changeMe':"),
        ("", "SECRET_KEY is empty:"),
        ("0123456789abcde", "SECRET_KEY has 15 characters, fewer than 16:"),
        ("$(openssl rand -hex 16)", "SECRET_KEY holds shell syntax"),
        ("`pwgen 16 1` in backquotes", "SECRET_KEY holds shell syntax"),
    ],
)
def test_a_known_or_short_key_is_refused_in_one_line(key: str, problem: str) -> None:
    message = refusal(key)
    assert message.startswith(problem)
    assert "\n" not in message
    assert "forge SRS addresses" in message
    assert "openssl rand -hex 16" in message
    assert message.endswith("in /etc/roost/mailu.env")
    if len(key) > 8:
        assert key not in message  # a weak key may still be someone's real one


def test_the_advice_names_the_settings_file_in_use(tmp_path: Path) -> None:
    assert refusal("changeMe", tmp_path / "my.env").endswith(f"in {tmp_path}/my.env")


@pytest.mark.parametrize("key", [GOOD, "A1B2C3D4E5F6G7H8", "x" * 16])
def test_a_key_of_16_characters_or_more_will_do(key: str) -> None:
    # 16 characters of A-Z and 0-9 is what Mailu's setup utility writes.
    check_secret_key(load_settings(environ={"SECRET_KEY": key}))


def test_loading_still_accepts_the_default() -> None:
    """Only what signs refuses it: the settings themselves load, for the management verbs."""
    assert load_settings(environ={}).SECRET_KEY == "changeMe"


def test_setup_refuses_to_write_a_short_key(tmp_path: Path) -> None:
    values, _ = new_settings({"SECRET_KEY": "short"}, {}, "mail.example.org")
    output = tmp_path / "mailu.env"
    with pytest.raises(SettingsError, match="SECRET_KEY has 5 characters"):
        write_settings(output, values)
    assert list(tmp_path.iterdir()) == []
    values, _ = new_settings({"SECRET_KEY": "changeMe"}, {}, "mail.example.org")
    assert len(values["SECRET_KEY"]) == 32  # the default is replaced, not refused


# -- the commands, as real processes ---------------------------------------------------------


def roost(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m roost --env FILE ARGS``; a command that starts a server is cut at 60 s."""
    environ = {k: v for k, v in os.environ.items() if k not in ("ROOST_ENV", "SECRET_KEY")}
    environ["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "roost", "--env", str(env_file), *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=REPO,
        timeout=60,
        check=False,
    )


# A loopback address of its own and no TLS: should a broken check let `up` start, it binds
# nothing that another test uses.
UNSAFE = "SECRET_KEY=changeMe\nBIND_ADDRESS4=127.0.13.250\nTLS_FLAVOR=notls\n"


@pytest.mark.parametrize("command", ["up", "gate", "init"])
def test_up_gate_and_init_refuse_the_default_key_before_starting(
    tmp_path: Path, command: str
) -> None:
    stack = make_stack(tmp_path, UNSAFE, migrate=False)
    result = roost(stack.env_file, command)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "roost: error: SECRET_KEY is Mailu's public example 'changeMe': a key others can know "
        "lets them forge SRS addresses and relay through this server; run `openssl rand -hex "
        f"16` and put SECRET_KEY=<its output> in {stack.env_file}"
    ]
    assert not stack.root.exists()  # nothing was prepared or started


def test_up_refuses_a_weak_api_token_before_starting(tmp_path: Path) -> None:
    """API_TOKEN opens everything a global admin can do: a guessable one stops the start."""
    settings = (
        "SECRET_KEY=0123456789abcdef0123\nBIND_ADDRESS4=127.0.13.250\nTLS_FLAVOR=notls\n"
        "API=true\nAPI_TOKEN=changeme\n"
    )
    stack = make_stack(tmp_path, settings, migrate=False)
    result = roost(stack.env_file, "up")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == [
        "roost: error: API_TOKEN is an example value: the API token can do anything a global "
        "administrator can; run `openssl rand -hex 16` and put API_TOKEN=<its output> in "
        f"{stack.env_file}"
    ]
    assert not stack.root.exists()


def test_management_verbs_work_with_the_default_key(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, UNSAFE)
    assert stack.settings.SECRET_KEY == "changeMe"
    result = roost(stack.env_file, "domain", "example.com")
    assert (result.returncode, result.stderr) == (0, "")
    result = roost(stack.env_file, "list", "domains")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("example.com")
