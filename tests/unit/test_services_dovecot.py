"""Dovecot's rendered configuration, as Dovecot itself reads it (``doveconf``).

Every assertion asks doveconf for the effective value of a setting, so a template that
Dovecot parses differently from what it says (a setting in the wrong section, a default
left in place) fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from roost import tls
from roost.layout import Layout
from roost.services.base import ServiceConfigError
from roost.services.dovecot import DovecotService
from roost.settings import Settings, load_settings

BIND = "127.0.6.1"


def write_certificate(cert_file: Path, key_file: Path) -> None:
    """A self-signed certificate: doveconf reads the files named by ssl_cert/ssl_key."""
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-keyout",
            str(key_file),
            "-out",
            str(cert_file),
        ],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def root() -> Iterator[Path]:
    """A short ROOT (Unix socket paths are limited) under a 0755 directory."""
    base = Path(tempfile.mkdtemp(prefix="rdv", dir="/tmp"))
    base.chmod(0o755)
    yield base / "root"
    shutil.rmtree(base)


def dovecot(root: Path, *, certificate: bool = True, **values: Any) -> DovecotService:
    settings = Settings(
        ROOT=root,
        DOMAIN="example.com",
        HOSTNAMES=("mail.example.com",),
        BIND_ADDRESS4=BIND,
        **values,
    )
    layout = Layout(settings)
    if settings.tls and certificate:
        write_certificate(layout.cert_file, layout.key_file)
    return DovecotService(layout)


def effective(service: DovecotService, name: str, *filters: str) -> str:
    """The value Dovecot uses for ``name`` (a path like service/lmtp/.../mode works too)."""
    command = ["doveconf", "-c", str(service.config_file)]
    for item in filters:
        command += ["-f", item]
    result = subprocess.run([*command, "-h", name], capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_tls_flavor_renders_a_private_instance(root: Path) -> None:
    service = dovecot(root, PORTS=(25, 110, 143, 465, 993, 995, 4190))
    service.render()

    binary, *arguments = service.command()
    assert Path(binary).name == "dovecot" and os.access(binary, os.X_OK)
    assert arguments == ["-F", "-c", str(root / "etc/dovecot/dovecot.conf")]
    assert effective(service, "base_dir") == str(root / "run/dovecot")
    assert effective(service, "state_dir") == str(root / "data/dovecot")
    assert effective(service, "log_path") == "/dev/stderr"
    assert effective(service, "listen") == BIND
    assert effective(service, "protocols").split() == ["imap", "pop3", "sieve", "lmtp"]
    # Lock files (the duplicate database's) in a directory of their own, not among folders.
    volatile = root / "run" / "dovecot-volatile"
    assert (
        effective(service, "mail_location") == f"maildir:{root}/mail/%u:VOLATILEDIR={volatile}/%u"
    )
    assert volatile.owner() == "mail" and (volatile.stat().st_mode & 0o777) == 0o700
    assert effective(service, "mail_home") == f"{root}/mail/%u"
    assert effective(service, "mail_uid") == "mail"
    assert effective(service, "mail_gid") == "mail"
    assert effective(service, "hostname") == "mail.example.com"
    assert effective(service, "postmaster_address") == "postmaster@example.com"


def test_tls_requires_encryption_before_plaintext_login(root: Path) -> None:
    service = dovecot(root)
    service.render()

    assert effective(service, "ssl") == "required"
    assert effective(service, "disable_plaintext_auth") == "yes"
    assert effective(service, "ssl_min_protocol") == "TLSv1.2"
    # "<file" settings: doveconf shows the file's content with -P only; -h names the file.
    assert effective(service, "ssl_cert") == f"<{root}/certs/cert.pem"
    assert effective(service, "ssl_key") == f"<{root}/certs/key.pem"
    for listener in ("imaps", "pop3s"):
        login = "imap-login" if listener == "imaps" else "pop3-login"
        assert effective(service, f"service/{login}/inet_listener/{listener}/ssl") == "yes"


def test_listeners_follow_ports(root: Path) -> None:
    """Mailu's default PORTS: 993, 995 and 4190 on, plaintext 143 and 110 off."""
    service = dovecot(root)
    service.render()

    def port(login: str, listener: str) -> int:
        return int(effective(service, f"service/{login}/inet_listener/{listener}/port"))

    assert port("imap-login", "imap") == 0
    assert port("imap-login", "imaps") == 993
    assert port("pop3-login", "pop3") == 0
    assert port("pop3-login", "pop3s") == 995
    assert port("managesieve-login", "sieve") == 4190
    assert sorted(service.readiness().tcp) == [(BIND, 993), (BIND, 995), (BIND, 4190)]


def test_sieve_and_pop3_are_not_started_without_their_ports(root: Path) -> None:
    service = dovecot(root, PORTS=(25, 993))
    service.render()

    assert effective(service, "protocols").split() == ["imap", "lmtp"]
    assert int(effective(service, "service/managesieve-login/inet_listener/sieve/port")) == 0
    assert service.readiness().tcp == ((BIND, 993),)


def test_notls_allows_plaintext_and_closes_the_tls_ports(root: Path) -> None:
    service = dovecot(root, TLS_FLAVOR="notls", PORTS=(25, 110, 143, 993, 995, 4190))
    service.render()

    assert effective(service, "ssl") == "no"
    assert effective(service, "disable_plaintext_auth") == "no"
    assert int(effective(service, "service/imap-login/inet_listener/imap/port")) == 143
    assert int(effective(service, "service/imap-login/inet_listener/imaps/port")) == 0
    assert int(effective(service, "service/pop3-login/inet_listener/pop3/port")) == 110
    assert int(effective(service, "service/pop3-login/inet_listener/pop3s/port")) == 0
    assert effective(service, "protocols").split() == ["imap", "pop3", "sieve", "lmtp"]


def test_ipv6_bind_address_is_listened_on(root: Path) -> None:
    service = dovecot(root, BIND_ADDRESS6="::1")
    service.render()

    assert [a.strip() for a in effective(service, "listen").split(",")] == [BIND, "::1"]
    assert (("::1", 993)) in service.readiness().tcp


def test_postfix_sockets_and_the_lua_authdb(root: Path) -> None:
    service = dovecot(root)
    service.render()

    assert effective(service, "service/lmtp/unix_listener/lmtp/mode") == "0600"
    assert effective(service, "service/lmtp/unix_listener/lmtp/user") == "postfix"
    assert effective(service, "service/auth/unix_listener/auth-client/mode") == "0660"
    assert effective(service, "service/auth/unix_listener/auth-client/user") == "postfix"
    assert service.readiness().unix_sockets == (
        root / "run/dovecot/lmtp",
        root / "run/dovecot/auth-client",
    )
    # The anvil penalty is off (rate limiting is the gate's); the fixed delay stays.
    assert effective(service, "service/anvil/unix_listener/anvil-auth-penalty/mode") == "00"
    assert effective(service, "auth_failure_delay") == "2 secs"
    assert effective(service, "auth_mechanisms") == "plain login"
    assert effective(service, "auth_username_format") == "%Lu"
    lua = root / "etc/dovecot/auth.lua"
    for db in ("passdb", "userdb"):
        assert f"file={lua} blocking=yes" in effective(service, db)
    # First the userdb file the gate writes; a user not in it falls through to the gate.
    userdbs = effective(service, "userdb")
    assert userdbs.index("driver = passwd-file") < userdbs.index("driver = lua")
    assert f"args = {root}/run/gate-userdb/users" in userdbs
    assert "result_failure = continue" in userdbs
    script = lua.read_text()
    assert 'local gate_url = "http://127.0.6.1:10080"' in script
    # The secret the gate demands on that port is read from the file roost up writes.
    assert f'local gate_secret_file = "{root}/run/gate-secret/dovecot-http.secret"' in script
    assert 'request:add_header("X-Roost-Secret", secret)' in script
    assert "function auth_password_verify(request, password)" in script
    assert "function auth_userdb_lookup(request)" in script


def test_delivery_quota_and_sieve(root: Path) -> None:
    service = dovecot(root, RECIPIENT_DELIMITER="+")
    service.render()

    assert effective(service, "recipient_delimiter") == "+"
    assert effective(service, "lmtp_save_to_detail_mailbox") == "no"
    mail_plugins = ["quota", "quota_clone"]
    assert effective(service, "mail_plugins", "protocol=lmtp").split() == [*mail_plugins, "sieve"]
    assert effective(service, "mail_plugins", "protocol=imap").split() == [
        *mail_plugins,
        "imap_quota",
        "imap_sieve",
    ]
    # Spam learning: the two IMAPSieve scripts are compiled, their programs executable.
    learn = service.learn_dir
    assert effective(service, "plugin/imapsieve_mailbox1_name") == "Junk"
    assert effective(service, "plugin/imapsieve_mailbox2_from") == "Junk"
    for name in ("learn-spam.svbin", "learn-ham.svbin"):
        assert (learn / name).is_file()
    for name in ("rspamd-learn-spam", "rspamd-learn-ham"):
        assert os.access(learn / name, os.X_OK)
        assert str(service.layout.rspamd_learn_socket) in (learn / name).read_text()
    assert effective(service, "mail_plugins", "protocol=pop3").split() == mail_plugins
    assert effective(service, "plugin/quota") == "maildir:User quota"
    assert effective(service, "plugin/quota_full_tempfail") == "no"
    assert effective(service, "plugin/sieve") == "file:~/sieve;active=~/.dovecot.sieve"
    # Postfix's listener for mail Dovecot sends (Sieve redirect, vacation).
    assert effective(service, "submission_host") == f"{BIND}:10026"
    for mailbox, use in (
        ("Sent", "\\Sent"),
        ("Drafts", "\\Drafts"),
        ("Trash", "\\Trash"),
        ("Junk", "\\Junk"),
    ):
        assert effective(service, f"namespace/inbox/mailbox/{mailbox}/special_use") == use
        assert effective(service, f"namespace/inbox/mailbox/{mailbox}/auto") == "subscribe"


def test_dicts_are_the_gates_socket(root: Path) -> None:
    """The before script and quota_clone both go to the gate's dict socket."""
    service = dovecot(root)
    service.render()

    socket = root / "run/gate-dict/dict.sock"
    assert effective(service, "plugin/quota_clone_dict") == f"proxy:{socket}:quota"
    # Compiled once per script text, kept outside the Maildir (where a directory would be
    # taken for a mailbox).
    binaries = root / "run/dovecot-volatile/%u/sieve-before"
    assert (
        effective(service, "plugin/sieve_before")
        == f"dict:proxy:{socket}:sieve;name=roost;bindir={binaries}"
    )


def test_spam_test_and_vacation_settings(root: Path) -> None:
    service = dovecot(root)
    service.render()

    assert effective(service, "plugin/sieve_extensions").split() == ["+spamtest", "+spamtestplus"]
    assert effective(service, "plugin/sieve_spamtest_status_type") == "strlen"
    assert effective(service, "plugin/sieve_spamtest_status_header") == "X-Spam-Level"
    assert effective(service, "plugin/sieve_spamtest_max_value") == "15"
    for setting in ("dont_check_recipient", "send_from_recipient", "to_header_ignore_envelope"):
        assert effective(service, f"plugin/sieve_vacation_{setting}") == "yes"


def test_full_text_search_setting_adds_no_index(root: Path) -> None:
    """Mailu's FULL_TEXT_SEARCH is read, but IMAP search stays Dovecot's exact search."""
    env_file = root.parent / "mailu.env"
    env_file.write_text("FULL_TEXT_SEARCH=en,de\n")
    load_settings(env_file=env_file, environ={})
    service = dovecot(root)
    service.render()

    assert effective(service, "mail_plugins").split() == ["quota", "quota_clone"]
    assert effective(service, "plugin/fts") == ""


def test_no_recipient_delimiter_by_default(root: Path) -> None:
    """Dovecot's own default is "+"; Mailu's RECIPIENT_DELIMITER default is none."""
    service = dovecot(root)
    service.render()

    assert effective(service, "recipient_delimiter") == ""


def test_login_log_names_both_ends_for_fail2ban(root: Path) -> None:
    service = dovecot(root)
    service.render()

    elements = effective(service, "login_log_format_elements").split()
    for element in ("user=<%u>", "method=%m", "rip=%r", "rport=%b", "lip=%l", "lport=%a"):
        assert element in elements


def test_mail_root_belongs_to_the_mail_user(root: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can hand the mail root to the mail user")
    service = dovecot(root)
    service.render()

    info = (root / "mail").stat()
    mail = subprocess.run(["id", "-u", "mail"], capture_output=True, text=True, check=True)
    assert info.st_uid == int(mail.stdout)
    assert info.st_mode & 0o777 == 0o700
    assert (root / "run/dovecot").stat().st_mode & 0o777 == 0o755


def test_override_is_applied_last(root: Path) -> None:
    service = dovecot(root)
    service.overrides.mkdir(parents=True)
    (service.overrides / "dovecot.conf").write_text(
        "mail_max_userip_connections = 50\nimap_idle_notify_interval = 5 mins\n"
    )
    service.render()

    assert effective(service, "mail_max_userip_connections", "protocol=imap") == "50"
    assert effective(service, "imap_idle_notify_interval", "protocol=imap") == "5 mins"


def test_unknown_setting_in_override_names_file_and_line(root: Path) -> None:
    service = dovecot(root)
    service.overrides.mkdir(parents=True)
    override = service.overrides / "dovecot.conf"
    override.write_text("# tuned\nmail_max_userip_connections = 30\nno_such_setting = 1\n")

    with pytest.raises(ServiceConfigError) as error:
        service.render()
    assert str(error.value) == (
        f"Dovecot override {override}, line 3: Unknown setting: no_such_setting"
    )


def test_unclosed_section_in_override_names_where_it_starts(root: Path) -> None:
    service = dovecot(root)
    service.overrides.mkdir(parents=True)
    override = service.overrides / "dovecot.conf"
    override.write_text("\nprotocol imap {\n  mail_max_userip_connections = 5\n")

    with pytest.raises(ServiceConfigError) as error:
        service.render()
    assert str(error.value).startswith(f"Dovecot override {override}, line 2: section not closed")


def test_reload_is_doveadm_reload_on_a_new_certificate(root: Path) -> None:
    service = dovecot(root, certificate=False)
    assert service.reload_command()[1:] == ["-c", str(service.config_file), "reload"]
    assert service.reload_on() == {tls.CERTIFICATE_CHANGED}
    assert dovecot(root, TLS_FLAVOR="notls").reload_on() == frozenset()


def test_root_too_long_for_sockets_is_refused(root: Path) -> None:
    service = dovecot(root / ("x" * 60), TLS_FLAVOR="notls")

    with pytest.raises(ServiceConfigError, match="too long for Dovecot's sockets"):
        service.render()


def test_root_with_characters_dovecot_would_expand_is_refused(root: Path) -> None:
    service = dovecot(root / "100%", TLS_FLAVOR="notls")

    with pytest.raises(ServiceConfigError, match="cannot use this path"):
        service.render()


def test_proxy_protocol_listeners_trust_real_ip_from_only(root: Path) -> None:
    """PROXY_PROTOCOL: haproxy = yes on exactly the listed listeners that are open, and
    haproxy_trusted_networks is REAL_IP_FROM (Mailu's)."""
    service = dovecot(
        root,
        PORTS=(25, 143, 993, 995, 4190),
        PROXY_PROTOCOL=(25, 110, 993, 4190),
        REAL_IP_FROM=("192.0.2.10/32", "2001:db8::/64"),
    )
    service.render()

    def haproxy(login: str, listener: str) -> str:
        return effective(service, f"service/{login}/inet_listener/{listener}/haproxy")

    assert haproxy("imap-login", "imaps") == "yes"
    assert haproxy("managesieve-login", "sieve") == "yes"
    assert haproxy("imap-login", "imap") == "no"
    assert haproxy("pop3-login", "pop3s") == "no"
    # 110 is listed but not open: its listener stays off, without the header.
    assert haproxy("pop3-login", "pop3") == "no"
    assert effective(service, "haproxy_trusted_networks") == "192.0.2.10/32 2001:db8::/64"


def test_without_proxy_protocol_no_listener_takes_a_header(root: Path) -> None:
    service = dovecot(root, REAL_IP_FROM=("192.0.2.10/32",))
    service.render()
    for login, listener in (("imap-login", "imaps"), ("pop3-login", "pop3s")):
        assert effective(service, f"service/{login}/inet_listener/{listener}/haproxy") == "no"
    assert effective(service, "haproxy_trusted_networks") == ""


def test_the_webmails_own_listeners_on_the_internal_address(root: Path) -> None:
    """WEBMAIL=roundcube: IMAP and ManageSieve for Roundcube alone, even with PORTS closed to
    both, where the gate takes its single sign-on tokens (roost/gate/webmail.py)."""
    service = dovecot(root, PORTS=(25, 443), WEBMAIL="roundcube")
    service.render()
    assert effective(service, "protocols").split() == ["imap", "sieve", "lmtp"]
    listener = "service/imap-login/inet_listener/imap-webmail"
    assert effective(service, f"{listener}/port") == "10143"
    assert effective(service, f"{listener}/address") == service.layout.internal_address
    assert effective(service, "service/imap-login/inet_listener/imaps/port") == "0"
    assert effective(service, "service/managesieve-login/inet_listener/sieve-webmail/port") == (
        "14190"
    )
    # Postfix's webmail listener is known by the SASL service name it gives Dovecot.
    lua = service.lua_file.read_text()
    assert 'local webmail_smtp_service = "smtp-webmail"' in lua
    assert 'local webmail_smtp_port = "10027"' in lua
    plain = dovecot(root)
    plain.render()
    assert "webmail" not in plain.config_file.read_text()
