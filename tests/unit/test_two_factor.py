"""Two-factor login in the store: enrolment, codes used once, recovery codes burned,
the secret unreadable at rest, export and import, the CLI, and the gate's index."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pyotp
import pytest
import yaml
from sqlalchemy import select, text

from roost.core import totp
from roost.store.db import Store
from roost.store.entities import domain as domains
from roost.store.entities import user as users
from roost.store.entities.names import ManageError
from roost.store.models import User
from roost.store.snapshot import load_directory
from tests.unit.test_cli_support import Stack, make_stack

NOW = 1_700_000_000.0
JOE = "joe@example.com"


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    stack = make_stack(tmp_path)
    result = stack.roost("user", "joe", "example.com", "joe-secret")
    assert result.exit_code == 0, result.stderr
    return stack


def code_at(secret: str, moment: float) -> str:
    return pyotp.TOTP(secret).at(moment)


def enrol(stack: Stack) -> tuple[str, list[str]]:
    """Enrol joe at NOW; the secret and the recovery codes."""
    with stack.session() as session:
        enrolment = users.begin_enrolment(session, stack.settings, JOE)
    with stack.session() as session:
        codes = users.confirm_enrolment(
            session, stack.settings, JOE, code_at(enrolment.secret, NOW), now=NOW
        )
    return enrolment.secret, codes


def verify(stack: Stack, code: str, moment: float = NOW + 30) -> str | None:
    with stack.session() as session:
        return users.verify_second_factor(session, stack.settings, JOE, code, now=moment)


# -- enrolment ---------------------------------------------------------------------------------


def test_only_a_right_code_turns_two_factor_login_on(stack: Stack) -> None:
    with stack.session() as session:
        enrolment = users.begin_enrolment(session, stack.settings, JOE)
    assert enrolment.uri.startswith("otpauth://totp/")
    assert f"secret={enrolment.secret}" in enrolment.uri
    wrong = f"{(int(code_at(enrolment.secret, NOW)) + 1) % 1_000_000:06d}"
    with pytest.raises(ManageError, match="not the app's current one"), stack.session() as s:
        users.confirm_enrolment(s, stack.settings, JOE, wrong, now=NOW)
    with stack.session() as session:
        status = users.two_factor_status(session, stack.settings, JOE)
        assert (status.enabled, status.pending) == (False, True)
        # Not on yet: nothing to verify, whatever is typed.
        code = code_at(enrolment.secret, NOW)
        assert users.verify_second_factor(session, stack.settings, JOE, code, now=NOW) is None
    with stack.session() as session:
        codes = users.confirm_enrolment(
            session, stack.settings, JOE, code_at(enrolment.secret, NOW), now=NOW
        )
    assert len(codes) == totp.RECOVERY_CODES
    with stack.session() as session:
        status = users.two_factor_status(session, stack.settings, JOE)
        assert (status.enabled, status.pending, status.recovery_codes_left) == (True, False, 10)
        with pytest.raises(ManageError, match="already on"):
            users.begin_enrolment(session, stack.settings, JOE)


def test_the_enrolment_code_cannot_be_used_again_to_log_in(stack: Stack) -> None:
    secret, _codes = enrol(stack)
    assert verify(stack, code_at(secret, NOW), NOW) is None


# -- codes -------------------------------------------------------------------------------------


def test_a_code_is_accepted_once_with_a_fixed_clock(stack: Stack) -> None:
    secret, _codes = enrol(stack)
    later = NOW + 300
    assert verify(stack, code_at(secret, later), later) == "totp"
    assert verify(stack, code_at(secret, later), later) is None  # replayed
    assert verify(stack, code_at(secret, later - 30), later) is None  # an earlier step
    assert verify(stack, code_at(secret, later + 30), later) == "totp"  # drift: next step
    assert verify(stack, code_at(secret, later + 90), later) is None  # outside the window


def test_a_recovery_code_works_once(stack: Stack) -> None:
    _secret, codes = enrol(stack)
    assert verify(stack, codes[0].upper()) == "recovery"
    assert verify(stack, codes[0]) is None  # burned
    assert verify(stack, codes[1]) == "recovery"
    with stack.session() as session:
        assert users.two_factor_status(session, stack.settings, JOE).recovery_codes_left == 8


def test_new_recovery_codes_replace_the_old_ones(stack: Stack) -> None:
    _secret, old = enrol(stack)
    with stack.session() as session:
        new = users.regenerate_recovery_codes(session, stack.settings, JOE)
    assert set(new).isdisjoint(old)
    assert verify(stack, old[2]) is None
    assert verify(stack, new[2]) == "recovery"


def test_turning_it_off_forgets_everything(stack: Stack) -> None:
    secret, codes = enrol(stack)
    with stack.session() as session:
        users.disable_two_factor(session, JOE)
    with stack.session() as session:
        joe = session.get(User, JOE)
        assert joe is not None
        assert (joe.totp_enabled, joe.totp_secret, joe.totp_last_step) == (False, None, None)
        assert joe.totp_recovery_codes == []
    assert verify(stack, code_at(secret, NOW + 300), NOW + 300) is None
    assert verify(stack, codes[0]) is None
    with stack.session() as session, pytest.raises(ManageError, match="is off"):
        users.regenerate_recovery_codes(session, stack.settings, JOE)


def test_verifying_is_not_a_change_the_gate_reloads_for(stack: Stack) -> None:
    secret, codes = enrol(stack)
    with stack.session() as session:
        generation = session.execute(text("SELECT generation FROM roost_generation")).scalar()
    assert verify(stack, code_at(secret, NOW + 300), NOW + 300) == "totp"
    assert verify(stack, codes[0]) == "recovery"
    with stack.session() as session:
        after = session.execute(text("SELECT generation FROM roost_generation")).scalar()
    assert after == generation


def test_a_secret_sealed_under_another_key_fails_closed(stack: Stack) -> None:
    secret, _codes = enrol(stack)
    moved = replace(stack.settings, SECRET_KEY="another-secret-key-0123456789")
    with stack.session() as session:
        code = code_at(secret, NOW + 300)
        assert users.verify_second_factor(session, moved, JOE, code, now=NOW + 300) is None


# -- at rest -----------------------------------------------------------------------------------


def test_neither_the_secret_nor_the_recovery_codes_are_readable_in_the_store(
    stack: Stack,
) -> None:
    secret, codes = enrol(stack)
    with stack.session() as session:
        row = session.execute(
            select(User.totp_secret, User.totp_recovery_codes).where(User.email == JOE)
        ).one()
    assert row.totp_secret.startswith("v1:")
    assert secret not in row.totp_secret
    database = b"".join(
        path.read_bytes() for path in (stack.root / "data").iterdir() if path.is_file()
    )
    for needle in [secret, secret.lower(), *codes, *(c.replace("-", "") for c in codes)]:
        assert needle.encode() not in database, needle


# -- export, import, CLI, index ----------------------------------------------------------------


def test_export_and_import_carry_two_factor_login(stack: Stack, tmp_path: Path) -> None:
    secret, codes = enrol(stack)
    with stack.session() as session:
        domains.set_totp_required(session, "example.com", True)
    exported = stack.roost("config-export", "--secrets")
    assert exported.exit_code == 0, exported.stderr
    (joe,) = yaml.safe_load(exported.stdout)["user"]
    assert joe["totp_enabled"] is True and joe["totp_secret"].startswith("v1:")
    assert len(joe["totp_recovery_codes"]) == 10
    assert "totp_last_step" not in joe  # run-time state: only with --full
    assert yaml.safe_load(exported.stdout)["domain"][0]["totp_required"] is True

    # Another server with the same SECRET_KEY takes the enrolment over.
    other = make_stack(tmp_path / "other")
    result = other.roost("config-import", input=exported.stdout)
    assert result.exit_code == 0, result.stderr
    with other.session() as session:
        assert users.two_factor_status(session, other.settings, JOE).required
        assert (
            users.verify_second_factor(
                session, other.settings, JOE, code_at(secret, NOW + 300), now=NOW + 300
            )
            == "totp"
        )
        assert users.verify_second_factor(session, other.settings, JOE, codes[5]) == "recovery"


def stored_secret(stack: Stack) -> str | None:
    with stack.session() as session:
        return session.get(User, JOE).totp_secret  # type: ignore[union-attr]


def test_export_hides_the_secret_and_hidden_keeps_it_on_import(
    stack: Stack, tmp_path: Path
) -> None:
    """Like a fetch's password: ``<hidden>`` unless --secrets; importing it changes nothing."""
    secret, _ = enrol(stack)
    sealed = stored_secret(stack)
    assert sealed and sealed.startswith("v1:")
    exported = stack.roost("config-export")
    assert exported.exit_code == 0, exported.stderr
    assert "v1:" not in exported.stdout
    (joe,) = yaml.safe_load(exported.stdout)["user"]
    assert joe["totp_secret"] == "<hidden>" and joe["totp_enabled"] is True

    for later, mode in ((600, ()), (1200, ("--update",))):  # replace mode, then update mode
        result = stack.roost("config-import", "-v", *mode, input=exported.stdout)
        assert result.exit_code == 0, result.stderr
        assert "v1:" not in result.stdout
        assert stored_secret(stack) == sealed
        assert verify(stack, code_at(secret, NOW + later), NOW + later) == "totp"

    # The change lines never show a secret either, unless asked (-s).
    edited = exported.stdout.replace("totp_secret: <hidden>", "-totp_secret: null").replace(
        "totp_enabled: true", "totp_enabled: false"
    )
    result = stack.roost("config-import", "--update", "-v", input=edited)
    assert result.exit_code == 0, result.stderr
    assert "v1:" not in result.stdout and "<hidden>" in result.stdout
    assert stored_secret(stack) is None

    # A store that never had the secret cannot take "<hidden>" for it.
    other = make_stack(tmp_path / "other")
    result = other.roost("config-import", input=exported.stdout)
    assert result.exit_code == 2
    assert "user[0].totp_enabled : two-factor login of" in result.stderr
    assert "(export with --secrets to include it)" in result.stderr


def test_import_refuses_a_secret_in_the_clear(stack: Stack) -> None:
    document = json.dumps(
        {"user": [{"email": JOE, "password": "x", "totp_secret": pyotp.random_base32()}]}
    )
    result = stack.roost("config-import", "--update", input=document)
    assert result.exit_code == 2
    assert "user[0].totp_secret : expected a sealed secret" in result.stderr


def test_import_refuses_two_factor_on_without_a_secret(stack: Stack) -> None:
    """The same rule as the store's: codes need a secret to be checked against."""
    document = json.dumps({"user": [{"email": JOE, "password": "x", "totp_enabled": True}]})
    result = stack.roost("config-import", "--update", input=document)
    assert result.exit_code == 2
    assert f"user[0].totp_enabled : two-factor login of '{JOE}' is on without a secret" in (
        result.stderr
    )


def test_the_cli_shows_disables_and_enforces(stack: Stack) -> None:
    enrol(stack)
    shown = stack.roost("2fa", "status", JOE)
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout == (f"{JOE}: two-factor login on\nrecovery codes left: 10\n")
    enforced = stack.roost("2fa", "enforce", "example.com", "on")
    assert enforced.stdout == "two-factor login required in example.com: on\n"
    assert "required: by the domain" in stack.roost("2fa", "status", JOE).stdout
    disabled = stack.roost("2fa", "disable", JOE)
    assert disabled.stdout == f"two-factor login of {JOE} is off\n"
    assert stack.roost("2fa", "status", JOE).stdout.startswith(f"{JOE}: two-factor login off")
    assert stack.roost("2fa", "enforce", "nowhere.example", "on").exit_code == 2


def test_the_index_carries_two_factor_login_and_the_domains_that_require_it(
    stack: Stack,
) -> None:
    store = Store.from_settings(stack.settings)
    try:
        directory = load_directory(store)
        assert directory.users[JOE].totp_enabled is False
        assert not directory.totp_required("example.com")
        enrol(stack)
        with stack.session() as session:
            domains.set_totp_required(session, "example.com", True)
        directory = load_directory(store)
        assert directory.users[JOE].totp_enabled is True
        assert directory.totp_required("example.com")
    finally:
        store.dispose()
