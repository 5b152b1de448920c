"""Settings: Mailu's names, defaults and rules; one clear line for a wrong value."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.settings import Settings, SettingsError, load_settings, read_env_file


def load(**environ: str) -> Settings:
    return load_settings(environ=environ)


def test_defaults_are_mailus() -> None:
    settings = load()
    assert settings.DOMAIN == "mailu.io"
    assert settings.HOSTNAMES[0] == "mail.mailu.io"
    assert settings.PORTS == (25, 80, 443, 465, 993, 995, 4190)
    assert settings.AUTH_RATELIMIT_IP == "5/hour"
    assert settings.AUTH_RATELIMIT_USER == "50/day"
    assert settings.AUTH_RATELIMIT_EXEMPTION_LENGTH == 86400
    assert settings.INITIAL_ADMIN_MODE == "ifmissing"
    assert settings.TLS_FLAVOR == "cert"
    assert settings.postmaster_address == "postmaster@mailu.io"


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("YES", True), ("False", False), ("no", False)]
)
def test_booleans_follow_mailus_words(raw: str, expected: bool) -> None:
    assert load(INBOUND_TLS_ENFORCE=raw).INBOUND_TLS_ENFORCE is expected


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("INBOUND_TLS_ENFORCE", "1", "INBOUND_TLS_ENFORCE='1': accepts true, yes, false or no"),
        (
            "ACME_SERVER",
            "http://acme.test/dir",
            "ACME_SERVER='http://acme.test/dir': accepts an https:// URL",
        ),
        (
            "TLS_FLAVOR",
            "tls",
            "TLS_FLAVOR='tls': accepts cert, letsencrypt, mail, mail-letsencrypt or notls",
        ),
        ("PORTS", "25,2525", "PORTS='25,2525': '2525' is not a mail or web port"),
        ("BIND_ADDRESS4", "::1", "BIND_ADDRESS4='::1': accepts one IPv4 address"),
        ("MESSAGE_SIZE_LIMIT", "50MB", "MESSAGE_SIZE_LIMIT='50MB': accepts a whole number"),
        ("AUTH_RATELIMIT_IP", "five", "AUTH_RATELIMIT_IP='five' is not a rate such as"),
        (
            "MESSAGE_RATELIMIT",
            "5 per 0 hours",
            "MESSAGE_RATELIMIT='5 per 0 hours': the period must be at least 1 hour",
        ),
        ("RELAYNETS", "10.0.0.0/8,nope", "RELAYNETS='10.0.0.0/8,nope': 'nope' is not a network"),
        ("DOMAIN", "exa mple.com", "DOMAIN='exa mple.com': accepts a host name"),
        ("DB_FLAVOR", "oracle", "DB_FLAVOR='oracle': accepts sqlite, postgresql, mysql"),
        ("ROOT", "relative/path", "ROOT='relative/path': accepts an absolute directory path"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL='LOUD': accepts CRITICAL"),
        ("RECIPIENT_DELIMITER", "+@", "RECIPIENT_DELIMITER='+@': accepts characters"),
        ("INITIAL_ADMIN_MODE", "x", "INITIAL_ADMIN_MODE='x': accepts create, ifmissing or update"),
        ("DEFAULT_SPAM_THRESHOLD", "101", "DEFAULT_SPAM_THRESHOLD='101': accepts a percentage"),
        ("AUTH_RATELIMIT_IP_V4_MASK", "33", "AUTH_RATELIMIT_IP_V4_MASK='33': accepts a prefix"),
        ("CREDENTIAL_ROUNDS", "3", "CREDENTIAL_ROUNDS='3': accepts a cost from 4 to 31"),
        ("HOSTNAMES", " , ", "HOSTNAMES=' , ': accepts a comma list of host names"),
        ("ROOT", "", "ROOT='': accepts an absolute directory path"),
    ],
)
def test_a_wrong_value_names_the_variable_and_what_it_accepts(
    name: str, raw: str, message: str
) -> None:
    with pytest.raises(SettingsError) as error:
        load(**{name: raw})
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_typed_values() -> None:
    settings = load(
        HOSTNAMES=" mail.example.com , mx.example.com ",
        PORTS="587,25,25",
        RELAYNETS="192.0.2.7,[2001:db8::]/32",
        WILDCARD_SENDERS="Robot@Example.com, x@y.z",
        DOMAIN="bücher.example",
    )
    assert settings.HOSTNAMES == ("mail.example.com", "mx.example.com")
    assert settings.PORTS == (25, 587)
    assert settings.RELAYNETS == ("192.0.2.7/32", "2001:db8::/32")
    assert settings.WILDCARD_SENDERS == ("robot@example.com", "x@y.z")
    assert settings.DOMAIN == "xn--bcher-kva.example"
    assert settings.mynetworks == ("127.0.0.1/32", "::1/128", "192.0.2.7/32", "2001:db8::/32")


def test_notls_turns_the_tls_only_ports_off_and_25_stays_on() -> None:
    settings = load(TLS_FLAVOR="notls", PORTS="80,143,465,993")
    assert settings.port_enabled(25)
    assert settings.port_enabled(143)
    assert not settings.port_enabled(465)
    assert not settings.port_enabled(993)
    assert not settings.port_enabled(995)


def test_database_uri_is_built_from_db_variables(tmp_path: Path) -> None:
    assert load(ROOT=str(tmp_path)).database_uri == f"sqlite:///{tmp_path}/data/main.db"
    uri = load(DB_FLAVOR="postgresql", DB_HOST="db", DB_PW="p@ss word").database_uri
    assert uri == "postgresql+psycopg://mailu:p%40ss%20word@db/mailu"
    appendix = load(DB_FLAVOR="mysql", DB_APPENDIX="?charset=utf8mb4").database_uri
    assert appendix == "mysql+pymysql://mailu@database/mailu?charset=utf8mb4"
    explicit = load(SQLALCHEMY_DATABASE_URI="sqlite:////x.db", DB_FLAVOR="mysql").database_uri
    assert explicit == "sqlite:////x.db"


def test_the_env_file_then_the_environment(tmp_path: Path) -> None:
    env_file = tmp_path / "mailu.env"
    env_file.write_text(
        "# Mailu settings\n\nDOMAIN=example.com\nHOSTNAMES='mail.example.com'\n"
        'export POSTMASTER="admin"\nWEBMAIL=roundcube\nSUBNET=192.168.203.0/24\n'
    )
    settings = load_settings(env_file=env_file, environ={"DOMAIN": "example.org"})
    assert settings.DOMAIN == "example.org"
    assert settings.HOSTNAMES == ("mail.example.com",)
    assert settings.POSTMASTER == "admin"


def test_mailus_postfix_log_file_is_a_setting_not_an_x_file(tmp_path: Path) -> None:
    env_file = tmp_path / "mailu.env"
    env_file.write_text("POSTFIX_LOG_FILE=/var/log/mail.log\nADMIN_ADDRESS=192.0.2.1\n")
    assert load_settings(env_file=env_file, environ={}) == Settings()


def test_the_env_file_refuses_typos_and_garbage(tmp_path: Path) -> None:
    env_file = tmp_path / "mailu.env"
    env_file.write_text("DOMIAN=example.com\n")
    with pytest.raises(SettingsError, match="unknown setting DOMIAN"):
        load_settings(env_file=env_file, environ={})
    env_file.write_text("DOMAIN example.com\n")
    with pytest.raises(SettingsError, match=r"line 1: expected NAME=VALUE"):
        read_env_file(env_file)
    with pytest.raises(SettingsError, match="does not exist"):
        read_env_file(tmp_path / "missing.env")


def test_x_file_reads_a_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret-value\n")
    assert load(SECRET_KEY_FILE=str(secret)).SECRET_KEY == "s3cret-value"
    with pytest.raises(SettingsError, match=r"SECRET_KEY_FILE=.*cannot be read"):
        load(SECRET_KEY_FILE=str(tmp_path / "nope"))


def test_relay_credentials_need_each_other_and_a_relayhost() -> None:
    with pytest.raises(SettingsError, match="set both or neither"):
        load(RELAYUSER="u")
    with pytest.raises(SettingsError, match="needs RELAYHOST"):
        load(RELAYUSER="u", RELAYPASSWORD="p")


def test_to_environ_round_trips() -> None:
    settings = load(
        DOMAIN="example.com",
        PORTS="25,587",
        RELAYNETS="192.0.2.0/24",
        INBOUND_TLS_ENFORCE="yes",
        BIND_ADDRESS6="::1",
    )
    assert load_settings(environ=settings.to_environ()) == settings


MAIL_PORTS = (25, 110, 143, 465, 587, 993, 995, 4190)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ()),
        ("25, 993,25", (25, 993)),
        ("mail", MAIL_PORTS),
        ("all-but-http", tuple(sorted((*MAIL_PORTS, 443)))),
        ("ALL", tuple(sorted((*MAIL_PORTS, 80, 443)))),
        ("mail,80", tuple(sorted((*MAIL_PORTS, 80)))),
    ],
)
def test_proxy_protocol_takes_ports_or_mailus_groups(raw: str, expected: tuple[int, ...]) -> None:
    settings = load(PROXY_PROTOCOL=raw, REAL_IP_FROM="192.0.2.10")
    assert expected == settings.PROXY_PROTOCOL


def test_proxy_protocol_counts_only_open_ports() -> None:
    settings = load(PROXY_PROTOCOL="mail", REAL_IP_FROM="192.0.2.10", PORTS="25,993")
    assert [port for port in MAIL_PORTS if settings.proxy_protocol(port)] == [25, 993]
    assert not load().proxy_protocol(25)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PROXY_PROTOCOL": "smtp"}, r"PROXY_PROTOCOL='smtp': 'smtp' is not a port .* mail, "),
        ({"PROXY_PROTOCOL": "2525"}, r"'2525' is not a port Roost opens"),
        (
            {"REAL_IP_FROM": "192.0.2.10,10.0.0.0/33"},
            r"REAL_IP_FROM='192.0.2.10,10.0.0.0/33': '10.0.0.0/33' is not a network",
        ),
        ({"REAL_IP_HEADER": "X Forwarded"}, r"REAL_IP_HEADER='X Forwarded': accepts a header"),
        ({"PROXY_PROTOCOL": "mail"}, r"^PROXY_PROTOCOL: needs REAL_IP_FROM"),
        ({"REAL_IP_HEADER": "X-Forwarded-For"}, r"^REAL_IP_HEADER=X-Forwarded-For: needs REAL_IP"),
        (
            {"REAL_IP_HEADER": "X-Forwarded-For", "REAL_IP_FROM": "::1", "PROXY_PROTOCOL": "443"},
            r"^REAL_IP_HEADER=X-Forwarded-For: must be empty while PROXY_PROTOCOL includes "
            "port 443",
        ),
    ],
)
def test_real_ip_settings_are_checked(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(**environ)


def test_real_ip_settings_that_go_together() -> None:
    """A header for the web and the PROXY protocol for mail only do not meet."""
    settings = load(
        REAL_IP_FROM="192.0.2.10, [2001:db8::]/64",
        REAL_IP_HEADER="X-Forwarded-For",
        PROXY_PROTOCOL="mail",
    )
    assert settings.REAL_IP_FROM == ("192.0.2.10/32", "2001:db8::/64")
    assert settings.REAL_IP_HEADER == "X-Forwarded-For"
    assert load_settings(environ=settings.to_environ()) == settings
