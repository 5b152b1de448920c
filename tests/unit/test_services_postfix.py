"""Postfix configuration: rendered into a temporary ROOT and judged by Postfix's own tools."""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_services_postfix_support import make_settings, roost_root

from roost import tls
from roost.layout import Layout
from roost.services.base import ServiceConfigError
from roost.services.postfix import PostfixService, system_prerequisites, tools
from roost.services.postfix.tools import settle

ADDRESS = "127.0.5.20"


@pytest.fixture()
def root() -> Iterator[Path]:
    with roost_root() as path:
        yield path


def rendered(root: Path, **values: Any) -> PostfixService:
    layout = Layout(make_settings(root, ADDRESS, **values))
    tls.ensure(layout)
    service = PostfixService(layout)
    service.render()
    return service


def postconf(service: PostfixService, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["postconf", "-c", str(service.etc), *args], capture_output=True, text=True, check=True
    )


def param(service: PostfixService, name: str) -> str:
    return postconf(service, "-xh", name).stdout.strip()


def service_param(service: PostfixService, listener: str, name: str) -> str:
    """A master.cf ``-o`` parameter of one service (``postconf -P``)."""
    return postconf(service, "-Ph", f"{listener}/inet/{name}").stdout.strip()


def services(service: PostfixService) -> dict[str, list[str]]:
    """master.cf entries by ``name/type`` -> their fields."""
    lines = postconf(service, "-Mf").stdout
    entries: dict[str, list[str]] = {}
    for entry in lines.replace("\n    ", " ").splitlines():
        fields = entry.split()
        entries[f"{fields[0]}/{fields[1]}"] = fields
    return entries


def override(root: Path, name: str, text: str, mode: int = 0o644) -> Path:
    path = root / "overrides" / "postfix" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


def postmap_query(service: PostfixService, key: str, table: str) -> str | None:
    result = subprocess.run(
        ["postmap", "-c", str(service.etc), "-q", key, table], capture_output=True, text=True
    )
    return result.stdout.strip() if result.returncode == 0 else None


def test_default_render_is_accepted_by_postfix_without_warnings(root: Path) -> None:
    service = rendered(root)
    listing = postconf(service, "-n")
    assert listing.stderr == ""  # no unused or unknown parameter in our own templates
    gate = f"socketmap:unix:{service.layout.gate_socketmap}"
    expected = {
        "compatibility_level": "3.6",
        "queue_directory": str(root / "queue"),
        "data_directory": str(root / "data" / "postfix"),
        "maillog_file": "/dev/stdout",
        "myhostname": "mail.example.test",
        "mydomain": "example.test",
        "mydestination": "",
        "virtual_mailbox_domains": f"{gate}:domain",
        "virtual_mailbox_maps": f"{gate}:mailbox",
        "virtual_alias_maps": f"{gate}:alias",
        "relay_domains": f"{gate}:transport",
        "transport_maps": f"lmdb:{service.etc}/transport.map, {gate}:transport",
        "smtpd_sender_login_maps": f"{gate}:senderlogin",
        "sender_canonical_maps": (
            f"pipemap:{{pcre:{service.etc}/srs_senders.pcre, {gate}:sendermap}}"
        ),
        "sender_canonical_classes": "envelope_sender",
        "recipient_canonical_maps": (
            f"pipemap:{{pcre:{service.etc}/srs_recipients.pcre, {gate}:recipientmap}}"
        ),
        "recipient_canonical_classes": "envelope_recipient, header_recipient",
        "virtual_transport": f"lmtp:unix:{root}/run/dovecot/lmtp",
        "smtpd_sasl_type": "dovecot",
        "smtpd_sasl_path": f"{root}/run/dovecot/auth-client",
        "message_size_limit": "50000000",
        "recipient_delimiter": "+",
        "smtputf8_enable": "no",
        "smtpd_helo_required": "yes",
        "mynetworks": "127.0.0.1/32, [::1]/128",
        "inet_interfaces": "loopback-only",
        "proxy_interfaces": ADDRESS,
        "smtp_tls_security_level": "dane",
        "smtp_dns_support_level": "dnssec",
        "smtp_tls_dane_insecure_mx_policy": "dane",
        "smtpd_tls_chain_files": f"{root}/certs/key.pem, {root}/certs/cert.pem",
        "smtpd_tls_mandatory_protocols": ">=TLSv1.2",
        "polite_destination_concurrency_limit": "3",
        "turtle_destination_rate_delay": "5s",
    }
    actual = {name: param(service, name) for name in expected}
    assert actual == expected
    # `postfix check` created the queue with the owners Postfix wants.
    assert (root / "queue" / "maildrop").stat().st_gid != 0
    assert (root / "data" / "postfix").is_dir()


def test_master_cf_listeners_and_transports(root: Path) -> None:
    service = rendered(root)
    entries = services(service)
    front = f"{ADDRESS}:10025"
    assert set(entries) >= {
        f"{front}/inet",
        f"{ADDRESS}:465/inet",
        f"{ADDRESS}:587/inet",
        "polite/unix",
        "turtle/unix",
        "outclean/unix",
        "postlog/unix-dgram",
        "lmtp/unix",
    }
    # Only the SMTP delivery agents run chrooted (5th field), to read the chroot's
    # resolv.conf that names Roost's unbound (DNS_RESOLVER=unbound, the default).
    delivery = {"smtp/unix", "relay/unix", "polite/unix", "turtle/unix"}
    assert {name for name, fields in entries.items() if fields[4] == "y"} == delivery
    xclient = service_param(service, front, "smtpd_authorized_xclient_hosts")
    assert xclient == "$roost_xclient_hosts"
    assert ADDRESS in param(service, "roost_xclient_hosts")
    assert service_param(service, front, "smtpd_sasl_auth_enable") == ""  # no AUTH on MX
    assert service_param(service, f"{ADDRESS}:465", "smtpd_tls_wrappermode") == "yes"
    assert service_param(service, f"{ADDRESS}:587", "smtpd_tls_security_level") == "encrypt"
    assert service_param(service, f"{ADDRESS}:587", "smtpd_tls_auth_only") == "yes"
    assert service_param(service, f"{ADDRESS}:587", "smtpd_sasl_auth_enable") == "yes"
    assert service_param(service, f"{ADDRESS}:587", "cleanup_service_name") == "outclean"
    assert "reject_authenticated_sender_login_mismatch" in param(
        service, "roost_submission_sender_restrictions"
    )
    gate = f"socketmap:unix:{service.layout.gate_socketmap}"
    # The message rate limit is one lookup per message, at DATA, on submission only.
    assert service_param(service, f"{ADDRESS}:587", "smtpd_data_restrictions") == (
        "$roost_submission_data_restrictions"
    )
    assert param(service, "roost_submission_data_restrictions") == (
        f"check_sasl_access {gate}:senderrate"
    )
    assert service_param(service, front, "smtpd_data_restrictions") == ""
    # Disabled mailboxes are refused first, before mynetworks may skip the other checks.
    for name in ("smtpd_recipient_restrictions", "roost_submission_recipient_restrictions"):
        assert param(service, name).startswith(f"check_recipient_access {gate}:recipientaccess,")


def test_port_25_refuses_our_domains_as_senders_after_mynetworks(root: Path) -> None:
    service = rendered(root)
    gate = f"socketmap:unix:{service.layout.gate_socketmap}"
    front = f"{ADDRESS}:10025"
    # The front listener uses main.cf's restrictions: RELAYNETS and loopback first.
    assert service_param(service, front, "smtpd_sender_restrictions") == ""
    assert param(service, "smtpd_sender_restrictions") == (
        f"permit_mynetworks, check_sender_access {gate}:senderaccess"
    )
    # Authenticated submission has restrictions of its own, without the map.
    for port in (465, 587):
        assert service_param(service, f"{ADDRESS}:{port}", "smtpd_sender_restrictions") == (
            "$roost_submission_sender_restrictions"
        )
    assert "senderaccess" not in param(service, "roost_submission_sender_restrictions")
    # "x@sub.example.test" is not "example.test": access maps match keys exactly.
    assert "smtpd_access_maps" not in param(service, "parent_domain_matches_subdomains")


def test_mail_dovecot_sends_has_a_listener_that_never_trusts_mynetworks(root: Path) -> None:
    service = rendered(root)
    gate = f"socketmap:unix:{service.layout.gate_socketmap}"
    sieve = f"{ADDRESS}:10026"
    assert f"{sieve}/inet" in services(service)
    assert service_param(service, sieve, "smtpd_authorized_xclient_hosts") == ""
    assert service_param(service, sieve, "smtpd_client_restrictions") == ""
    stages = ("sender", "relay", "recipient", "data")
    for stage in stages:
        value = service_param(service, sieve, f"smtpd_{stage}_restrictions")
        assert value == f"$roost_sieve_{stage}_restrictions"
        assert "permit_mynetworks" not in param(service, f"roost_sieve_{stage}_restrictions")
    # Relaying is the user's right when the sender is one of ours (OK), else refused.
    assert param(service, "roost_sieve_relay_restrictions") == (
        f"check_sender_access {gate}:localsender, reject"
    )
    # One lookup per message, at DATA: the rate limit keyed by the envelope sender.
    assert param(service, "roost_sieve_data_restrictions") == (
        f"check_sender_access {gate}:mailfromrate"
    )


def test_turtle_spaces_deliveries_per_domain(root: Path) -> None:
    """postconf(5): the rate delay is per domain only with a recipient limit above 1."""
    service = rendered(root)
    assert param(service, "turtle_destination_rate_delay") == "5s"
    assert param(service, "turtle_destination_concurrency_limit") == "1"
    assert int(param(service, "turtle_destination_recipient_limit")) > 1


def test_notls_has_no_465_and_587_allows_auth_without_tls(root: Path) -> None:
    service = rendered(root, TLS_FLAVOR="notls", PORTS=(25, 80, 465, 587))
    entries = services(service)
    assert f"{ADDRESS}:465/inet" not in entries
    assert service_param(service, f"{ADDRESS}:587", "smtpd_tls_security_level") == "none"
    assert service_param(service, f"{ADDRESS}:587", "smtpd_tls_auth_only") == "no"
    assert param(service, "smtpd_tls_chain_files") == ""
    assert not (root / "certs").exists()


def test_without_submission_ports_only_the_internal_listener(root: Path) -> None:
    service = rendered(root, PORTS=(25, 80, 443))
    listeners = [name for name in services(service) if name.endswith("/inet")]
    assert listeners == [f"{ADDRESS}:10025/inet", f"{ADDRESS}:10026/inet"]


def test_wildcard_bind_and_ipv6(root: Path) -> None:
    service = rendered(root, BIND_ADDRESS4="0.0.0.0", RELAYNETS=("192.0.2.0/24", "2001:db8::/32"))
    entries = services(service)
    # The internal hop never follows a wildcard: it stays on this stack's own loopback address.
    internal = service.layout.internal_address
    assert ipaddress.ip_address(internal).is_loopback and internal != "127.0.0.1"
    assert {f"{internal}:10025/inet", "465/inet", "587/inet"} <= set(entries)
    assert param(service, "inet_interfaces") == "all"
    assert param(service, "mynetworks") == "127.0.0.1/32, [::1]/128, 192.0.2.0/24, [2001:db8::]/32"

    service = rendered(root, BIND_ADDRESS6="::1")
    assert {f"{ADDRESS}:465/inet", "[::1]:465/inet", "[::1]:587/inet"} <= set(services(service))
    assert param(service, "inet_protocols") == "ipv4, ipv6"


def test_relayhost_credentials_are_a_private_compiled_map(root: Path) -> None:
    service = rendered(
        root,
        RELAYHOST="[smarthost.example.net]:587",
        RELAYUSER="roost",
        RELAYPASSWORD="s3cret",
        OUTBOUND_TLS_LEVEL="encrypt",
    )
    assert param(service, "relayhost") == "[smarthost.example.net]:587"
    assert param(service, "smtp_sasl_auth_enable") == "yes"
    assert param(service, "smtp_tls_security_level") == "encrypt"
    assert param(service, "smtp_dns_support_level") == ""  # DNSSEC only for dane
    table = f"lmdb:{service.etc}/sasl_passwd"
    assert postmap_query(service, "[smarthost.example.net]:587", table) == "roost:s3cret"
    assert not (service.etc / "sasl_passwd").exists()  # only the compiled map remains
    assert stat.S_IMODE((service.etc / "sasl_passwd.lmdb").stat().st_mode) == 0o600


def test_secret_files_are_private_from_their_creation(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RELAYPASSWORD and a private override map are never in a file others may read.

    chmod is disabled, so a file created 0644 and narrowed later would stay 0644; and at
    each postmap run the source it reads and then the map it wrote are checked at once.
    """
    modes: list[tuple[str, int]] = []
    real_run = tools.run

    def checked_run(args: list[str], timeout: float = 120, umask: int = -1) -> Any:
        if args[0] != tools.POSTMAP:
            return real_run(args, timeout, umask)
        source = Path(args[-1].partition(":")[2])
        modes.append((source.name, stat.S_IMODE(source.stat().st_mode)))
        result = real_run(args, timeout, umask)
        compiled = source.with_name(source.name + ".lmdb")
        modes.append((compiled.name, stat.S_IMODE(compiled.stat().st_mode)))
        return result

    def no_chmod(path: object, mode: int, *args: object, **kwargs: object) -> None:
        pass

    override(root, "secret.map", "smarthost user:pw\n", mode=0o600)
    override(root, "transport.map", "slow.example turtle:\n")
    monkeypatch.setattr(tools, "run", checked_run)
    monkeypatch.setattr(tools.os, "chmod", no_chmod)
    service = rendered(
        root, RELAYHOST="[smarthost.example.net]:587", RELAYUSER="roost", RELAYPASSWORD="s3cret"
    )
    assert ("sasl_passwd", 0o600) in modes and ("sasl_passwd.lmdb", 0o600) in modes
    assert ("secret.map", 0o600) in modes and ("secret.map.lmdb", 0o600) in modes
    assert ("transport.map.lmdb", 0o644) in modes  # a public map stays readable
    for name in ("sasl_passwd.lmdb", "secret.map.lmdb"):
        assert stat.S_IMODE((service.etc / name).stat().st_mode) == 0o600


def test_write_private_creates_the_file_with_its_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[int] = []
    real_open = os.open

    def recording_open(path: Any, flags: int, mode: int = 0o777, *args: Any) -> int:
        opened.append(mode)
        return real_open(path, flags, mode, *args)

    monkeypatch.setattr(tools.os, "open", recording_open)
    old = os.umask(0o022)
    try:
        tools.write_private(tmp_path / "secret", b"pw", 0o600)
        tools.write_private(tmp_path / "shared", b"x", 0o640)
    finally:
        os.umask(old)
    assert opened == [0o600, 0o640]
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o640
    assert (tmp_path / "secret").read_bytes() == b"pw"
    assert not list(tmp_path.glob(".*.tmp"))


def test_dane_without_defer_on_tls_error(root: Path) -> None:
    service = rendered(root, DEFER_ON_TLS_ERROR=False)
    assert param(service, "smtp_tls_dane_insecure_mx_policy") == "may"


def test_tls_policy_order_override_then_dane_then_mta_sts(root: Path) -> None:
    service = rendered(root)
    gate = f"socketmap:unix:{root}/run/gate/socketmap.sock"
    assert param(service, "smtp_tls_policy_maps") == (
        f"lmdb:{service.etc}/tls_policy.map, proxy:{gate}:dane, "
        f"proxy:socketmap:unix:{root}/run/mta-sts/mta-sts.sock:postfix"
    )
    # proxymap(8) opens the socketmaps outside the chroot; it only opens listed tables.
    assert f"proxy:{gate}:dane" in param(service, "proxy_read_maps")
    assert param(service, "smtp_tls_CAfile") == "/etc/ssl/certs/ca-certificates.crt"
    chroot_conf = root / "queue" / "etc" / "resolv.conf"
    assert chroot_conf.read_text() == f"nameserver {ADDRESS}\noptions trust-ad\n"
    # A link, so postfix-script does not warn that it differs from the host's file.
    assert chroot_conf.is_symlink()
    assert rendered(root).etc.is_dir() and chroot_conf.is_symlink()  # a second start


def test_no_dane_map_below_the_dane_level(root: Path) -> None:
    service = rendered(root, OUTBOUND_TLS_LEVEL="encrypt")
    assert ":dane" not in param(service, "smtp_tls_policy_maps")
    assert param(service, "smtp_tls_policy_maps").endswith("mta-sts.sock:postfix")


def test_the_system_resolver_leaves_the_delivery_agents_unchrooted(root: Path) -> None:
    rendered(root)
    service = rendered(root, DNS_RESOLVER="system")
    assert all(fields[4] == "n" for fields in services(service).values())
    assert not (root / "queue" / "etc").exists()  # the earlier start's copy is gone


def test_a_named_resolver_goes_into_the_chroot(root: Path) -> None:
    rendered(root, DNS_RESOLVER="192.0.2.53")
    chroot_conf = root / "queue" / "etc" / "resolv.conf"
    assert chroot_conf.read_text().startswith("nameserver 192.0.2.53\n")


def test_outclean_header_checks(root: Path) -> None:
    service = rendered(root)
    table = f"pcre:{service.etc}/outclean_header_checks.pcre"
    for header in ("Received: from x", "X-Mailer: Foo", "user-agent: Bar", "X-Originating-IP: [1]"):
        assert postmap_query(service, header, table) == "IGNORE"
    assert postmap_query(service, "MIME-Version: 1.0 (Mac OS X Mail)", table) == (
        "REPLACE MIME-Version: 1.0"
    )
    assert postmap_query(service, "Subject: Received: yes", table) is None


@pytest.mark.parametrize(
    ("table", "key", "asked"),
    [
        # Senders: every address that could be foreign; never one SRS made here already.
        ("srs_senders.pcre", "bob@foreign.test", True),
        ("srs_senders.pcre", "joe+tag@example.test", True),
        ("srs_senders.pcre", "SRS0=x@foreign.test", True),  # someone else's: becomes SRS1
        ("srs_senders.pcre", "SRS0=HHHH=TT=foreign.test=bob@example.test", False),
        ("srs_senders.pcre", "srs1=HHHH=hop.test==x@EXAMPLE.TEST", False),
        ("srs_senders.pcre", "SRS0=x@example.test.evil", True),
        ("srs_senders.pcre", "@foreign.test", False),  # Postfix's domain-only key
        ("srs_senders.pcre", "bob", False),  # and its bare local part
        # Recipients: only what can be an SRS address is reversed.
        ("srs_recipients.pcre", "SRS0=HHHH=TT=foreign.test=bob@example.test", True),
        ("srs_recipients.pcre", "srs1=HHHH=hop.test==x@alt.test", True),
        ("srs_recipients.pcre", "joe@example.test", False),
        ("srs_recipients.pcre", "@example.test", False),
        ("srs_recipients.pcre", "srs0", False),
    ],
)
def test_only_keys_the_gate_can_rewrite_reach_its_srs_maps(
    root: Path, table: str, key: str, asked: bool
) -> None:
    """The pcre half of the canonical maps' pipemap: a key it answers goes to the gate
    as it is; any other is not found without a round trip."""
    service = rendered(root)
    answer = postmap_query(service, key, f"pcre:{service.etc}/{table}")
    assert answer == (key if asked else None)


def test_overrides_are_applied_like_mailu(root: Path) -> None:
    override(root, "postfix.cf", "# a comment\n\nmessage_size_limit = 1234\n")
    override(root, "postfix.master", "turtle/unix = turtle unix - - n - 2 smtp\n")
    override(root, "transport.map", "yahoo.example polite:\n")
    override(root, "custom.map", "a b\n", mode=0o600)
    service = rendered(root)
    assert param(service, "message_size_limit") == "1234"
    assert services(service)["turtle/unix"][6] == "2"
    assert postmap_query(service, "yahoo.example", f"lmdb:{service.etc}/transport.map") == (
        "polite:"
    )
    custom = service.etc / "custom.map.lmdb"
    assert stat.S_IMODE(custom.stat().st_mode) == 0o600  # a private source stays private

    # Overrides removed: nothing of them survives the next render.
    for path in (root / "overrides" / "postfix").iterdir():
        path.unlink()
    service = rendered(root)
    assert param(service, "message_size_limit") == "50000000"
    assert not custom.exists()
    assert postmap_query(service, "yahoo.example", f"lmdb:{service.etc}/transport.map") is None


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "postfix.cf",
            "# ok\nmessage_size_limit 12\n",
            "postfix.cf, line 2: expected 'name = value'",
        ),
        ("postfix.cf", "mesage_size_limit = 12\n", "postfix.cf, line 1: Postfix has no parameter"),
        ("postfix.cf", "\n\nmessage_size_limit = lots\n", "postfix.cf, line 3: "),
        ("postfix.master", "turtle unix - - n - 2 smtp\n", "postfix.master, line 1: expected"),
        ("postfix.master", "turtle/unix = turtle unix -\n", "postfix.master, line 1: postconf"),
        ("transport.map", "good smtp:\nbroken\n", "transport.map: postmap refused it"),
    ],
)
def test_broken_overrides_name_file_and_line(
    root: Path, name: str, text: str, expected: str
) -> None:
    path = override(root, name, text)
    with pytest.raises(ServiceConfigError) as error:
        rendered(root)
    message = str(error.value)
    assert str(path.parent / expected) in message or expected in message
    assert str(path) in message


def test_broken_map_line_is_reported_with_the_user_file(root: Path) -> None:
    path = override(root, "tls_policy.map", "example.net encrypt\nbroken\n")
    with pytest.raises(ServiceConfigError, match=rf"{path}, line 2: expected format"):
        rendered(root)


def test_the_certificate_is_the_pair_tls_serves(root: Path) -> None:
    """The renderer names the files roost.tls serves; checking them is tls's job, once."""
    layout = Layout(make_settings(root, ADDRESS))
    pair = tls.served_pair(layout)
    assert pair is not None
    context = PostfixService(layout).context()
    assert (context["cert_file"], context["key_file"]) == (pair.cert_file, pair.key_file)


def test_root_with_space_is_refused() -> None:
    layout = Layout(make_settings(Path("/tmp/with space/root"), ADDRESS, TLS_FLAVOR="notls"))
    with pytest.raises(ServiceConfigError, match="spaces or commas"):
        PostfixService(layout).render()


def test_runner_interface(root: Path) -> None:
    service = PostfixService(Layout(make_settings(root, ADDRESS)))
    etc = str(root / "etc" / "postfix")
    assert service.command() == ["postfix", "-c", etc, "start-fg"]
    assert service.stop_command() == ["postfix", "-c", etc, "stop"]
    assert service.reload_command() == ["postfix", "-c", etc, "reload"]
    assert service.reload_on() == {tls.CERTIFICATE_CHANGED}
    notls = PostfixService(Layout(make_settings(root, ADDRESS, TLS_FLAVOR="notls")))
    assert notls.reload_on() == frozenset()
    assert service.readiness().tcp == ((ADDRESS, 10025),)
    assert list(service.after) == ["gate", "dovecot", "rspamd", "unbound", "mtasts"]


def alternate_directories(system: Path) -> str:
    return subprocess.run(
        ["postconf", "-c", str(system), "-h", "alternate_config_directories"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_system_prerequisites_lists_the_instance_once(root: Path) -> None:
    system = root / "system-postfix"
    system.mkdir()
    main_cf = system / "main.cf"
    main_cf.write_text("alternate_config_directories = /srv/other/etc/postfix\n")
    settle(system)  # spare Postfix's wait for a freshly written main.cf
    layout = Layout(make_settings(root, ADDRESS))
    message = system_prerequisites(layout, default_config_dir=system)
    assert message is not None and "alternate_config_directories" in message
    settle(system)
    assert system_prerequisites(layout, default_config_dir=system) is None
    assert alternate_directories(system) == f"/srv/other/etc/postfix, {root}/etc/postfix"
    # The uninstaller takes only its own entry out, and the setting once it is empty.
    for remaining in ("/srv/other/etc/postfix", ""):
        settle(system)
        message = system_prerequisites(layout, default_config_dir=system, remove=True)
        assert message is not None and "removed" in message
        settle(system)
        assert system_prerequisites(layout, default_config_dir=system, remove=True) is None
        assert alternate_directories(system) == remaining
        if remaining:
            settle(system)
            postconf_set = f"alternate_config_directories = {root}/etc/postfix"
            subprocess.run(["postconf", "-c", str(system), "-e", postconf_set], check=True)
    assert "alternate_config_directories" not in main_cf.read_text()


def test_proxy_protocol_moves_submission_behind_nginx(root: Path) -> None:
    """465 in PROXY_PROTOCOL: Postfix gives the public port up to nginx's stream proxy and
    takes the PROXY header only on its internal listener, which nginx alone reaches; 587,
    not listed, stays Postfix's own public listener without a header."""
    service = rendered(
        root, BIND_ADDRESS4="0.0.0.0", PROXY_PROTOCOL=(25, 465), REAL_IP_FROM=("192.0.2.10/32",)
    )
    internal = service.layout.internal_address
    entries = services(service)
    assert "465/inet" not in entries
    assert f"{internal}:10465/inet" in entries and "587/inet" in entries
    proxied = f"{internal}:10465"
    assert service_param(service, proxied, "smtpd_upstream_proxy_protocol") == "haproxy"
    assert service_param(service, proxied, "smtpd_tls_wrappermode") == "yes"
    assert service_param(service, proxied, "smtpd_sasl_auth_enable") == "yes"
    assert service_param(service, proxied, "syslog_name") == "postfix/submissions"
    assert service_param(service, "587", "smtpd_upstream_proxy_protocol") == ""
    # Port 25's header is nginx's mail proxy's; Postfix hears XCLIENT there as before.
    assert service_param(service, f"{internal}:10025", "smtpd_upstream_proxy_protocol") == ""


def test_the_webmails_submission_listener(root: Path) -> None:
    """WEBMAIL=roundcube: submission for Roundcube alone on the internal address, naming
    its SASL service so that the gate knows the listener (tokens only there)."""
    service = rendered(root, WEBMAIL="roundcube")
    listener = f"{ADDRESS}:10027"
    assert f"{listener}/inet" in services(service)
    assert service_param(service, listener, "smtpd_sasl_service") == "smtp-webmail"
    assert service_param(service, listener, "smtpd_sasl_auth_enable") == "yes"
    assert service_param(service, listener, "smtpd_relay_restrictions") == (
        "$roost_submission_relay_restrictions"
    )
    assert f"{listener}/inet" not in services(rendered(root))
