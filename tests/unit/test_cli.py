"""The `roost` command line: Mailu's verbs, Roost's own, errors as one line and status 2."""

from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from passlib.hash import md5_crypt
from sqlalchemy import select, text

from roost import cli as cli_module
from roost.cli import cli
from roost.core.passwords import verify_password, verify_token
from roost.layout import Layout
from roost.store.db import alembic_config
from roost.store.models import Alias, Alternative, Domain, Relay, Token, User
from tests.unit.test_cli_support import Stack, error_line, make_stack


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return make_stack(tmp_path)


# -- settings and the store ------------------------------------------------------------------


def test_store_must_be_initialised(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, migrate=False)
    result = stack.roost("user", "joe", "example.com", "pw")
    database = stack.root / "data" / "main.db"
    assert error_line(result) == (
        f"roost: error: the store sqlite:///{database} is not initialised: run roost init first"
    )
    assert not stack.root.exists()  # a mistyped ROOT leaves nothing behind
    database.parent.mkdir(parents=True)
    database.touch()
    assert error_line(stack.roost("list", "domains")) == (
        f"roost: error: the store sqlite:///{database} is not initialised: run roost init first"
    )


def test_store_must_have_the_current_schema(stack: Stack) -> None:
    with stack.session() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    database = stack.root / "data" / "main.db"
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert error_line(stack.roost("list", "domains")) == (
        f"roost: error: the store sqlite:///{database} has schema 0000, this Roost needs {head}: "
        "run roost init first"
    )


def test_bad_setting_is_one_line(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, migrate=False)
    stack.env_file.write_text(stack.env_file.read_text() + "TLS_FLAVOR=bogus\n")
    result = stack.roost("list", "domains")
    assert error_line(result) == (
        "roost: error: TLS_FLAVOR='bogus': "
        "accepts cert, letsencrypt, mail, mail-letsencrypt or notls"
    )


def test_missing_settings_file_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--env", str(tmp_path / "absent.env"), "list", "domains"])
    assert (
        error_line(result) == f"roost: error: settings file {tmp_path}/absent.env: does not exist"
    )


def test_settings_file_from_roost_env(stack: Stack) -> None:
    result = CliRunner().invoke(
        cli, ["domain", "example.com"], env={"ROOST_ENV": str(stack.env_file)}
    )
    assert result.exit_code == 0, result.stderr
    assert stack.roost("list", "domains").stdout.startswith("example.com\t")


def test_default_settings_file_then_environment(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROOST_ENV", raising=False)
    monkeypatch.setattr(cli_module, "DEFAULT_ENV_FILE", stack.env_file)
    result = CliRunner().invoke(cli, ["domain", "first.example"])
    assert result.exit_code == 0, result.stderr

    # Without a file, the environment alone names ROOT.
    monkeypatch.setattr(cli_module, "DEFAULT_ENV_FILE", tmp_path / "absent.env")
    result = CliRunner().invoke(cli, ["list", "domains"], env={"ROOT": str(stack.root)})
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "first.example\t0\t0\t-1\t-1\t0\n"


# -- users -----------------------------------------------------------------------------------


def test_user_then_duplicate_differing_in_case(stack: Stack) -> None:
    result = stack.roost("user", "joe", "example.com", "pw")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    result = stack.roost("user", "Joe", "EXAMPLE.com", "pw")
    assert error_line(result) == "roost: error: 'joe@example.com' is already a user"


def test_user_password_from_stdin(stack: Stack) -> None:
    result = stack.roost("user", "joe", "example.com", "-", input="s3cret phrase\n")
    assert result.exit_code == 0, result.stderr
    with stack.session() as session:
        user = session.get(User, "joe@example.com")
        assert user is not None and verify_password(user.password, "s3cret phrase")[0]
    result = stack.roost("password", "joe", "example.com", "-", input="")
    assert error_line(result) == "roost: error: no password on standard input"


def test_user_and_alias_share_no_address(stack: Stack) -> None:
    assert stack.roost("alias", "team", "example.com", "joe@example.com").exit_code == 0
    result = stack.roost("user", "team", "example.com", "pw")
    assert error_line(result) == "roost: error: 'team@example.com' is already an alias"
    assert stack.roost("user", "joe", "example.com", "pw").exit_code == 0
    result = stack.roost("alias", "joe", "example.com", "x@example.org")
    assert error_line(result) == "roost: error: 'joe@example.com' is already a user"


def test_malformed_address_is_named(stack: Stack) -> None:
    result = stack.roost("user", "a b", "example.com", "pw")
    assert error_line(result) == "roost: error: 'a b': local part contains the character ' '"
    result = stack.roost("user-delete", "nobody")
    assert error_line(result) == "roost: error: 'nobody': no @"
    result = stack.roost("alias", "team", "example.com", "joe@example.com,joe")
    assert error_line(result) == "roost: error: destination 'joe': no @"


def test_unicode_domain(stack: Stack) -> None:
    assert stack.roost("user", "joe", "Bücher.example", "pw").exit_code == 0
    assert stack.roost("alias", "team", "bücher.example", "joe@BÜCHER.example").exit_code == 0
    with stack.session() as session:
        assert session.get(User, "joe@xn--bcher-kva.example") is not None
        alias = session.get(Alias, "team@xn--bcher-kva.example")
        assert alias is not None and alias.destination == ["joe@xn--bcher-kva.example"]
    assert stack.roost("list", "domains").stdout == "bücher.example\t1\t1\t-1\t-1\t0\n"
    assert stack.roost("list", "users", "xn--bcher-kva.example").stdout == (
        "joe@bücher.example\tenabled\tuser\t1000000000\t\n"
    )
    assert stack.roost("list", "aliases").stdout == (
        "team@bücher.example\tjoe@bücher.example\texact\tenabled\n"
    )


def test_admin_modes_and_messages(stack: Stack) -> None:
    result = stack.roost("admin", "boss", "example.com", "one")
    assert (result.exit_code, result.stdout) == (0, "created admin user\n")
    result = stack.roost("admin", "boss", "example.com", "two")
    assert error_line(result) == "roost: error: user 'boss@example.com' exists, not created"
    result = stack.roost("admin", "boss", "example.com", "two", "-m", "ifmissing")
    assert (result.exit_code, result.stdout) == (
        0,
        "user 'boss@example.com' exists, not updating\n",
    )
    result = stack.roost("admin", "boss", "example.com", "-", "--mode", "update", input="three\n")
    assert (result.exit_code, result.stdout) == (0, "updated admin password\n")
    with stack.session() as session:
        user = session.get(User, "boss@example.com")
        assert user is not None and user.global_admin
        assert verify_password(user.password, "three")[0]
    assert stack.roost("list", "users").stdout == "boss@example.com\tenabled\tadmin\t1000000000\t\n"


def test_user_in_alternative_domain_is_refused(stack: Stack) -> None:
    assert stack.roost("domain", "example.com").exit_code == 0
    assert stack.roost("alternative", "add", "alt.example", "example.com").exit_code == 0
    result = stack.roost("user", "joe", "alt.example", "pw")
    assert error_line(result) == (
        "roost: error: 'alt.example' is an alternative domain of 'example.com', not a domain"
    )
    assert stack.roost("relay", "add", "relay.example").exit_code == 0
    result = stack.roost("admin", "joe", "relay.example", "pw")
    assert error_line(result) == "roost: error: 'relay.example' is a relayed domain, not a domain"


def test_domain_names_are_unique_across_kinds(stack: Stack) -> None:
    assert stack.roost("domain", "example.com").exit_code == 0
    assert stack.roost("relay", "add", "relay.example", "smtp.example.net:587").exit_code == 0
    result = stack.roost("alternative", "add", "relay.example", "example.com")
    assert error_line(result) == "roost: error: 'relay.example' is already a relayed domain"
    result = stack.roost("relay", "add", "example.com")
    assert error_line(result) == "roost: error: 'example.com' is already a domain"
    assert stack.roost("alternative", "add", "alt.example", "example.com").exit_code == 0
    result = stack.roost("domain", "alt.example")
    assert error_line(result) == (
        "roost: error: 'alt.example' is already an alternative domain of 'example.com'"
    )


def test_limits_are_enforced(stack: Stack) -> None:
    result = stack.roost("domain", "example.com", "-u", "1", "-a", "-1", "-q", "2000")
    assert result.exit_code == 0, result.stderr
    assert stack.roost("user", "joe", "example.com", "pw").exit_code == 0
    result = stack.roost("user", "ann", "example.com", "pw")
    assert error_line(result) == (
        "roost: error: domain 'example.com' already has its maximum of 1 users"
    )
    result = stack.roost("setlimits", "example.com", "-1", "0", "0")
    assert result.exit_code == 0, result.stderr
    result = stack.roost("alias", "team", "example.com", "joe@example.com")
    assert error_line(result) == (
        "roost: error: domain 'example.com' already has its maximum of 0 aliases"
    )
    result = stack.roost("setlimits", "example.com", "-2", "0", "0")
    assert error_line(result) == "roost: error: max_users -2: accepts -1 (unlimited) or a count"
    result = stack.roost("setlimits", "nowhere.example", "1", "1", "1")
    assert error_line(result) == "roost: error: domain 'nowhere.example' does not exist"
    assert stack.roost("list", "domains").stdout == "example.com\t1\t0\t-1\t0\t0\n"
    # The user made while the cap was 2000 got the capped quota.
    assert "\t2000\t" in stack.roost("list", "users").stdout


def test_user_import_user_delete_and_password(stack: Stack) -> None:
    legacy = md5_crypt.hash("password")
    result = stack.roost("user-import", "joe", "example.com", "{MD5-CRYPT}" + legacy)
    assert result.exit_code == 0, result.stderr
    with stack.session() as session:
        user = session.get(User, "joe@example.com")
        assert user is not None and user.password == legacy
        assert verify_password(user.password, "password")[0]
    assert stack.roost("password", "joe", "example.com", "new").exit_code == 0
    result = stack.roost("password", "ann", "example.com", "new")
    assert error_line(result) == "roost: error: user 'ann@example.com' does not exist"
    assert stack.roost("user-delete", "joe@example.com").exit_code == 0
    assert stack.roost("list", "users").stdout.startswith("joe@example.com\tdisabled\t")
    assert stack.roost("user-delete", "-r", "joe@example.com").exit_code == 0
    assert stack.roost("list", "users").stdout == ""
    result = stack.roost("user-delete", "--really", "joe@example.com")
    assert error_line(result) == "roost: error: user 'joe@example.com' does not exist"


def test_setmanager(stack: Stack) -> None:
    assert stack.roost("user", "joe", "example.com", "pw").exit_code == 0
    assert stack.roost("setmanager", "example.com", "joe").exit_code == 0
    with stack.session() as session:
        user = session.get(User, "joe@example.com")
        assert user is not None and [d.name for d in user.manager_of] == ["example.com"]
    result = stack.roost("setmanager", "example.com", "ann")
    assert error_line(result) == "roost: error: user 'ann@example.com' does not exist"


def test_domain_delete(stack: Stack) -> None:
    assert stack.roost("user", "joe", "example.com", "pw").exit_code == 0
    result = stack.roost("domain-delete", "example.com")
    assert error_line(result) == (
        "roost: error: domain 'example.com' has 1 users and 0 aliases; "
        "add --really to delete them with it"
    )
    assert stack.roost("domain-delete", "example.com", "--really").exit_code == 0
    with stack.session() as session:
        assert session.scalars(select(Domain)).all() == []


# -- aliases, alternatives, relays, tokens ---------------------------------------------------


def test_alias_and_alias_delete(stack: Stack) -> None:
    assert stack.roost("alias", "%", "example.com", "catch@example.com", "-w").exit_code == 0
    assert stack.roost("alias", "team", "example.com", "b@example.com,a@example.com").exit_code == 0
    assert stack.roost("list", "aliases", "example.com").stdout == (
        "%@example.com\tcatch@example.com\twildcard\tenabled\n"
        "team@example.com\ta@example.com,b@example.com\texact\tenabled\n"
    )
    assert stack.roost("alias-delete", "Team@Example.com").exit_code == 0
    result = stack.roost("alias-delete", "team@example.com")
    assert error_line(result) == "roost: error: alias 'team@example.com' does not exist"


def test_alternative_add_and_delete(stack: Stack) -> None:
    assert stack.roost("domain", "example.com").exit_code == 0
    assert stack.roost("alternative", "add", "Alt.Example", "example.com").exit_code == 0
    assert stack.roost("list", "alternatives").stdout == "alt.example\texample.com\n"
    assert stack.roost("alternative", "delete", "alt.example").exit_code == 0
    with stack.session() as session:
        assert session.scalars(select(Alternative)).all() == []
    result = stack.roost("alternative", "delete", "alt.example")
    assert error_line(result) == "roost: error: alternative domain 'alt.example' does not exist"


def test_relay_add_checks_the_target(stack: Stack) -> None:
    result = stack.roost("relay", "add", "relay.example", "mx:[192.0.2.1]")
    assert error_line(result) == (
        "roost: error: relay 'relay.example': target 'mx:[192.0.2.1]': "
        "mx: cannot be used with a [bracketed] host"
    )
    assert stack.roost("relay", "add", "relay.example", "lmtp:backend:24").exit_code == 0
    assert stack.roost("list", "relays").stdout == "relay.example\tlmtp:backend:24\n"
    with stack.session() as session:
        assert session.get(Relay, "relay.example") is not None
    assert stack.roost("relay", "delete", "relay.example").exit_code == 0
    result = stack.roost("relay", "delete", "relay.example")
    assert error_line(result) == "roost: error: relayed domain 'relay.example' does not exist"


def test_token_add_list_delete(stack: Stack) -> None:
    assert stack.roost("user", "joe", "example.com", "pw").exit_code == 0
    result = stack.roost("token", "add", "joe@example.com", "-c", "phone", "-i", "192.0.2.0/24")
    assert result.exit_code == 0, result.stderr
    raw = result.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", raw)
    with stack.session() as session:
        (token,) = session.scalars(select(Token)).all()
        assert verify_token(token.password, raw)[0]
        ident = token.id
    listed = stack.roost("token", "list", "joe@example.com").stdout
    assert re.fullmatch(rf"{ident}\tphone\t192\.0\.2\.0/24\t\d{{4}}-\d\d-\d\d\n", listed)
    assert raw not in listed
    result = stack.roost("token", "delete", "joe@example.com", str(ident + 1))
    assert error_line(result) == f"roost: error: user 'joe@example.com' has no token {ident + 1}"
    assert stack.roost("token", "delete", "joe@example.com", str(ident)).exit_code == 0
    assert stack.roost("token", "list", "joe@example.com").stdout == ""
    result = stack.roost("token", "add", "ann@example.com")
    assert error_line(result) == "roost: error: user 'ann@example.com' does not exist"


def test_list_refuses_domain_for_domains(stack: Stack) -> None:
    result = stack.roost("list", "domains", "example.com")
    assert result.exit_code == 2
    assert "DOMAIN applies to users and aliases, not domains" in result.stderr


def test_list_of_unknown_domain(stack: Stack) -> None:
    result = stack.roost("list", "users", "nowhere.example")
    assert error_line(result) == "roost: error: domain 'nowhere.example' does not exist"


# -- configuration through the CLI -----------------------------------------------------------


def test_config_export_to_file_is_private(stack: Stack, tmp_path: Path) -> None:
    assert stack.roost("user", "joe", "example.com", "pw").exit_code == 0
    target = tmp_path / "export.yml"
    result = stack.roost("config-export", "-o", str(target))
    assert (result.exit_code, result.stdout) == (0, "")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == stack.roost("config-export").stdout
    assert "email: joe@example.com" in target.read_text()


def test_config_export_unknown_filter(stack: Stack) -> None:
    result = stack.roost("config-export", "user.colour")
    assert error_line(result).startswith(
        "roost: error: filter 'user.colour': user has no attribute 'colour' (accepts "
    )


def test_config_import_reports_and_dry_runs(stack: Stack) -> None:
    document = "domain:\n  - name: example.com\n  - name: other.example\n"
    result = stack.roost("config-import", "-n", input=document)
    assert (result.exit_code, result.stdout) == (
        0,
        "Dry run. Not committing changes.\nCreated: domain(2)\n",
    )
    assert stack.roost("list", "domains").stdout == ""
    result = stack.roost("config-import", "-v", input=document)
    assert result.stdout == (
        "Created domain: 'example.com'\nCreated domain: 'other.example'\n"
        "Committing changes.\nCreated: domain(2)\n"
    )
    result = stack.roost("config-import", "-q", input=document)
    assert (result.exit_code, result.stdout) == (0, "")
    result = stack.roost("config-import", input="domain:\n  - name: bad name\n  - nom: x\n")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "[ValidationError] 2 errors occurred during input validation\n"
        "- domain[0].name : domain 'bad name' is not valid: contains white space\n"
        "- domain[1] : name is required\n"
    )


def test_config_import_from_a_file(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "in.json"
    source.write_text('{"relay": [{"name": "relay.example", "smtp": "[192.0.2.1]:25"}]}')
    result = stack.roost("config-import", str(source))
    assert result.stdout == "Committing changes.\nCreated: relay(1)\n"
    result = stack.roost("config-import", str(tmp_path / "absent.yml"))
    assert error_line(result) == (
        f"roost: error: cannot read {tmp_path}/absent.yml: No such file or directory"
    )


def test_status_reports_a_stopped_stack(stack: Stack) -> None:
    result = stack.roost("status")
    assert result.exit_code != 0, (result.stdout, result.stderr)
    assert result.stdout == f"roost: `roost up` is not running for {stack.root}\n"


# -- telling the gate ------------------------------------------------------------------------


class FakeGate:
    """Listens on the control socket like the gate and answers every line with ``reply``."""

    def __init__(self, path: Path, reply: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.requests: list[bytes] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen()
        self.reply = reply
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                self.requests.append(connection.recv(256))
                connection.sendall(self.reply)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def short_stack() -> Iterator[Stack]:
    """A stack under a short path: a Unix socket path holds at most 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="rcli") as directory:
        yield make_stack(Path(directory))


def test_changes_ask_the_gate_to_reload(short_stack: Stack) -> None:
    gate = FakeGate(Layout(short_stack.settings).gate_control, b"ok 7\n")
    try:
        assert short_stack.roost("user", "joe", "example.com", "pw").exit_code == 0
        assert gate.requests == [b"reload\n"]
        assert short_stack.roost("list", "users").exit_code == 0  # reading: no reload
        result = short_stack.roost("user", "joe", "example.com", "pw")  # refused: no reload
        assert result.exit_code == 2
        assert gate.requests == [b"reload\n"]
    finally:
        gate.close()


def test_a_failing_gate_is_a_warning(short_stack: Stack) -> None:
    gate = FakeGate(Layout(short_stack.settings).gate_control, b"error store locked\n")
    try:
        result = short_stack.roost("domain", "example.com")
        assert result.exit_code == 0
        assert result.stderr == ("roost: warning: the gate could not reload: error store locked\n")
    finally:
        gate.close()
    with short_stack.session() as session:
        assert session.get(Domain, "example.com") is not None


# -- a real process --------------------------------------------------------------------------


def test_process_user_alias_and_export(stack: Stack) -> None:
    result = stack.roost_process("user", "joe", "bücher.example", "-", input="pw\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    result = stack.roost_process("alias", "joe", "bücher.example", "x@example.org")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "roost: error: 'joe@bücher.example' is already a user\n"
    result = stack.roost_process("config-export", "-j", "user.spam_threshold")
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"user":[{"email":"joe@bücher.example","spam_threshold":80}]}\n'


def test_process_errors_without_traceback(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, migrate=False)
    result = stack.roost_process("list", "domains")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"roost: error: the store sqlite:///{stack.root}/data/main.db is not initialised: "
        "run roost init first"
    ]
    stack.env_file.write_text(stack.env_file.read_text() + "DEFAULT_QUOTA=lots\n")
    result = stack.roost_process("list", "domains")
    assert (result.returncode, result.stderr) == (
        2,
        "roost: error: DEFAULT_QUOTA='lots': accepts a whole number\n",
    )


def test_process_init_then_manage() -> None:
    """`roost init` prepares the store that the management verbs then use."""
    with tempfile.TemporaryDirectory(prefix="rinit") as directory:
        # init refuses a ROOT the daemons' users could not reach; pytest's tmp is 0700.
        os.chmod(directory, 0o755)
        _init_then_manage(Path(directory))


def _init_then_manage(tmp_path: Path) -> None:
    stack = make_stack(
        tmp_path,
        "TLS_FLAVOR=notls\nINITIAL_ADMIN_ACCOUNT=admin\nINITIAL_ADMIN_DOMAIN=example.com\n"
        "INITIAL_ADMIN_PW=secret\n",
        migrate=False,
    )
    result = stack.roost_process("init")
    assert result.returncode == 0, result.stderr
    assert "roost: created admin user admin@example.com" in result.stdout.splitlines()
    result = stack.roost_process("list", "users")
    assert result.stdout == "admin@example.com\tenabled\tadmin\t1000000000\t\n"
    assert os.path.isfile(stack.root / "data" / "main.db")


def test_init_names_a_broken_certificate_in_one_line() -> None:
    """A key that does not belong to the certificate stops `roost init` with one line, exit 2."""
    with tempfile.TemporaryDirectory(prefix="rinit") as directory:
        os.chmod(directory, 0o755)
        stack = make_stack(Path(directory), "TLS_FLAVOR=cert\n", migrate=False)
        certs = stack.root / "certs"
        certs.mkdir(parents=True)
        (certs / "cert.pem").write_text("not a certificate\n")
        (certs / "key.pem").write_text("not a key\n")
        result = stack.roost_process("init")
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("roost: error: ") and "cert.pem" in lines[0]
