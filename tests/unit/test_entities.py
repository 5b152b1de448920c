"""roost.store.entities: every check that keeps a broken change out of the store."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from passlib.hash import sha512_crypt
from sqlalchemy import select

from roost.core.passwords import is_token_shaped, verify_password, verify_token
from roost.store.entities import alias as aliases
from roost.store.entities import alternative as alternatives
from roost.store.entities import domain as domains
from roost.store.entities import fetch as fetches
from roost.store.entities import manager as managers
from roost.store.entities import names
from roost.store.entities import relay as relays
from roost.store.entities import token as tokens
from roost.store.entities import user as users
from roost.store.entities.names import ManageError
from roost.store.models import Alias, Alternative, Domain, Relay, Token, User
from tests.unit.test_cli_support import Stack, make_stack


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return make_stack(tmp_path)


def refused(stack: Stack, operation, message: str) -> None:
    """``operation(session)`` raises ManageError with exactly ``message``; nothing is kept."""
    with pytest.raises(ManageError) as caught, stack.session() as session:
        operation(session)
    assert str(caught.value) == message


# -- users -----------------------------------------------------------------------------------


def test_user_gets_mailu_defaults_and_a_hashed_password(stack: Stack) -> None:
    with stack.session() as session:
        users.create_user(session, stack.settings, "Joe", "Example.COM", "secret")
    with stack.session() as session:
        user = session.get(User, "joe@example.com")
        assert user is not None
        assert (user.localpart, user.domain_name) == ("joe", "example.com")
        assert user.quota_bytes == stack.settings.DEFAULT_QUOTA
        assert user.spam_threshold == stack.settings.DEFAULT_SPAM_THRESHOLD
        assert user.change_pw_next_login is True
        assert user.global_admin is False
        assert user.password.startswith("$argon2id$")
        assert verify_password(user.password, "secret")[0]
        assert session.get(Domain, "example.com") is not None  # created on the way


def test_user_settings_defaults_come_from_settings(tmp_path: Path) -> None:
    stack = make_stack(tmp_path, "DEFAULT_QUOTA=5000\nDEFAULT_SPAM_THRESHOLD=60\n")
    with stack.session() as session:
        user = users.create_user(session, stack.settings, "joe", "example.com", "pw")
        assert (user.quota_bytes, user.spam_threshold) == (5000, 60)


@pytest.mark.parametrize(
    ("default_quota", "cap", "expected"),
    [(1000, 0, 1000), (1000, 300, 300), (1000, 3000, 1000), (0, 300, 300), (0, 0, 0)],
)
def test_quota_is_capped_by_the_domain(
    stack: Stack,
    default_quota: int,
    cap: int,
    expected: int,
) -> None:
    settings = replace(stack.settings, DEFAULT_QUOTA=default_quota)
    with stack.session() as session:
        domains.create_domain(session, "example.com", max_quota_bytes=cap)
        user = users.create_user(session, settings, "joe", "example.com", "pw")
        assert user.quota_bytes == expected


def test_unicode_domain_is_stored_as_punycode(stack: Stack) -> None:
    with stack.session() as session:
        users.create_user(session, stack.settings, "joerg", "Bücher.example", "pw")
    with stack.session() as session:
        assert session.get(User, "joerg@xn--bcher-kva.example") is not None
        assert [d.name for d in domains.list_domains(session)] == ["xn--bcher-kva.example"]
        assert names.show_email("joerg@xn--bcher-kva.example") == "joerg@bücher.example"


def test_duplicate_user_differing_in_case_is_refused(stack: Stack) -> None:
    with stack.session() as session:
        users.create_user(session, stack.settings, "joe", "example.com", "pw")
    refused(
        stack,
        lambda s: users.create_user(s, stack.settings, "JOE", "EXAMPLE.com", "pw"),
        "'joe@example.com' is already a user",
    )


def test_user_with_the_address_of_an_alias_is_refused(stack: Stack) -> None:
    with stack.session() as session:
        aliases.create_alias(session, "team", "example.com", "joe@example.com")
    refused(
        stack,
        lambda s: users.create_user(s, stack.settings, "Team", "example.com", "pw"),
        "'team@example.com' is already an alias",
    )


def test_alias_with_the_address_of_a_user_is_refused(stack: Stack) -> None:
    with stack.session() as session:
        users.create_user(session, stack.settings, "joe", "example.com", "pw")
    refused(
        stack,
        lambda s: aliases.create_alias(s, "joe", "example.com", "x@example.org"),
        "'joe@example.com' is already a user",
    )


@pytest.mark.parametrize(
    ("localpart", "domain", "message"),
    [
        ("a b", "example.com", "'a b': local part contains the character ' '"),
        ("a,b", "example.com", "'a,b': local part contains the character ','"),
        (".joe", "example.com", "'.joe': local part starts or ends with a dot"),
        ("", "example.com", "local part is empty"),
        ("joe", "exa mple.com", "domain 'exa mple.com' is not valid: contains white space"),
        (
            "joe",
            "1.2.3.4",
            "domain '1.2.3.4' is not valid: the last label is numeric (use a host name, not an IP)",
        ),
    ],
)
def test_malformed_addresses_are_named(
    stack: Stack,
    localpart: str,
    domain: str,
    message: str,
) -> None:
    refused(stack, lambda s: users.create_user(s, stack.settings, localpart, domain, "pw"), message)


def test_user_in_an_alternative_or_relayed_domain_is_refused(stack: Stack) -> None:
    with stack.session() as session:
        domains.create_domain(session, "example.com")
        alternatives.add_alternative(session, "alt.example", "example.com")
        relays.add_relay(session, "relay.example", "smtp.example.net")
    refused(
        stack,
        lambda s: users.create_user(s, stack.settings, "joe", "alt.example", "pw"),
        "'alt.example' is an alternative domain of 'example.com', not a domain",
    )
    refused(
        stack,
        lambda s: aliases.create_alias(s, "joe", "relay.example", "a@example.com"),
        "'relay.example' is a relayed domain, not a domain",
    )


def test_max_users_is_enforced(stack: Stack) -> None:
    with stack.session() as session:
        domains.create_domain(session, "example.com", max_users=1)
        users.create_user(session, stack.settings, "joe", "example.com", "pw")
    refused(
        stack,
        lambda s: users.create_user(s, stack.settings, "ann", "example.com", "pw"),
        "domain 'example.com' already has its maximum of 1 users",
    )
    with stack.session() as session:
        domains.set_limits(session, "example.com", -1, None, None)
        users.create_user(session, stack.settings, "ann", "example.com", "pw")


def test_max_aliases_zero_allows_none(stack: Stack) -> None:
    with stack.session() as session:
        domains.create_domain(session, "example.com", max_aliases=0)
    refused(
        stack,
        lambda s: aliases.create_alias(s, "team", "example.com", "a@example.org"),
        "domain 'example.com' already has its maximum of 0 aliases",
    )


def test_empty_password_is_refused(stack: Stack) -> None:
    refused(
        stack,
        lambda s: users.create_user(s, stack.settings, "joe", "example.com", ""),
        "password is empty",
    )


def test_import_user_keeps_the_hash_minus_its_scheme(stack: Stack) -> None:
    legacy = sha512_crypt.using(rounds=5000).hash("old secret")
    with stack.session() as session:
        user = users.import_user(
            session, stack.settings, "joe", "example.com", "{SHA512-CRYPT}" + legacy
        )
        assert user.password == legacy
        assert user.change_pw_next_login is False
    assert verify_password(legacy, "old secret")[0]
    refused(
        stack,
        lambda s: users.import_user(s, stack.settings, "ann", "example.com", "{CRYPT}"),
        "password hash '{CRYPT}' is empty or contains white space",
    )


def test_admin_modes_follow_mailu(stack: Stack) -> None:
    with stack.session() as session:
        assert (
            users.admin(session, stack.settings, "boss", "example.com", "one")
            == "created admin user"
        )
    with stack.session() as session:
        user = session.get(User, "boss@example.com")
        assert user is not None and user.global_admin and not user.change_pw_next_login
    refused(
        stack,
        lambda s: users.admin(s, stack.settings, "boss", "example.com", "two", "create"),
        "user 'boss@example.com' exists, not created",
    )
    with stack.session() as session:
        message = users.admin(session, stack.settings, "boss", "example.com", "two", "ifmissing")
        assert message == "user 'boss@example.com' exists, not updating"
    with stack.session() as session:
        stored = session.get(User, "boss@example.com")
        assert stored is not None and verify_password(stored.password, "one")[0]
        message = users.admin(session, stack.settings, "boss", "example.com", "two", "update")
        assert message == "updated admin password"
    with stack.session() as session:
        stored = session.get(User, "boss@example.com")
        assert stored is not None and verify_password(stored.password, "two")[0]
    refused(
        stack,
        lambda s: users.admin(s, stack.settings, "boss", "example.com", "x", "sometimes"),
        "mode 'sometimes': accepts create, ifmissing, update",
    )


def test_password_reset_requires_a_change_at_next_login(stack: Stack) -> None:
    with stack.session() as session:
        users.admin(session, stack.settings, "boss", "example.com", "one")
    with stack.session() as session:
        users.set_password(session, "boss@example.com", "two")
    with stack.session() as session:
        user = session.get(User, "boss@example.com")
        assert user is not None
        assert verify_password(user.password, "two")[0]
        assert user.change_pw_next_login is True
    refused(
        stack,
        lambda s: users.set_password(s, "nobody@example.com", "x"),
        "user 'nobody@example.com' does not exist",
    )


def test_user_delete_disables_unless_really(stack: Stack) -> None:
    with stack.session() as session:
        users.create_user(session, stack.settings, "joe", "example.com", "pw")
        tokens.add_token(session, "joe@example.com")
    with stack.session() as session:
        users.delete_user(session, "joe@example.com")
    with stack.session() as session:
        user = session.get(User, "joe@example.com")
        assert user is not None and user.enabled is False
        users.delete_user(session, "joe@example.com", really=True)
    with stack.session() as session:
        assert session.get(User, "joe@example.com") is None
        assert session.scalars(select(Token)).all() == []


# -- aliases ---------------------------------------------------------------------------------


def test_alias_destinations_are_checked_and_normalised(stack: Stack) -> None:
    with stack.session() as session:
        aliases.create_alias(
            session, "Team", "example.com", " Joe@Example.com, ann@Bücher.example,joe@example.com"
        )
    with stack.session() as session:
        alias = session.get(Alias, "team@example.com")
        assert alias is not None
        assert alias.destination == ["ann@xn--bcher-kva.example", "joe@example.com"]
        assert alias.wildcard is False
    refused(
        stack,
        lambda s: aliases.create_alias(s, "x", "example.com", "joe@example.com,bad"),
        "destination 'bad': no @",
    )
    refused(
        stack,
        lambda s: aliases.create_alias(s, "x", "example.com", " , "),
        "an alias needs at least one destination address",
    )


def test_wildcard_alias_takes_a_like_pattern(stack: Stack) -> None:
    with stack.session() as session:
        aliases.create_alias(session, "%", "example.com", "catch@example.com", wildcard=True)
        aliases.create_alias(session, "sales_%", "example.com", "s@example.com", wildcard=True)
    with stack.session() as session:
        assert session.get(Alias, "%@example.com").wildcard is True  # type: ignore[union-attr]
    refused(
        stack,
        lambda s: aliases.create_alias(s, "a\\b", "example.com", "x@example.com", wildcard=True),
        "'a\\\\b': wildcard pattern contains the character '\\\\'",
    )


def test_alias_delete(stack: Stack) -> None:
    with stack.session() as session:
        aliases.create_alias(session, "team", "example.com", "joe@example.com")
    with stack.session() as session:
        aliases.delete_alias(session, "team@example.com")
    refused(
        stack,
        lambda s: aliases.delete_alias(s, "team@example.com"),
        "alias 'team@example.com' does not exist",
    )


# -- domains, alternatives, relays ------------------------------------------------------------


def test_one_name_is_a_domain_an_alternative_or_a_relay(stack: Stack) -> None:
    with stack.session() as session:
        domains.create_domain(session, "example.com")
        alternatives.add_alternative(session, "alt.example", "example.com")
        relays.add_relay(session, "relay.example")
    for name, use in (
        ("example.com", "a domain"),
        ("alt.example", "an alternative domain of 'example.com'"),
        ("relay.example", "a relayed domain"),
    ):
        message = f"'{name}' is already {use}"
        refused(stack, lambda s, n=name: domains.create_domain(s, n), message)
        refused(stack, lambda s, n=name: alternatives.add_alternative(s, n, "example.com"), message)
        refused(stack, lambda s, n=name: relays.add_relay(s, n), message)


def test_domain_command_creates_then_updates_given_limits(stack: Stack) -> None:
    with stack.session() as session:
        _domain, created = domains.set_domain(session, "example.com", max_users=5)
        assert created
    with stack.session() as session:
        domain, created = domains.set_domain(session, "example.com", max_aliases=7)
        assert not created
        assert (domain.max_users, domain.max_aliases, domain.max_quota_bytes) == (5, 7, 0)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ((-2, -1, 0), "max_users -2: accepts -1 (unlimited) or a count"),
        ((-1, -5, 0), "max_aliases -5: accepts -1 (unlimited) or a count"),
        ((-1, -1, -1), "max_quota_bytes -1: accepts 0 (no cap) or a number of bytes"),
    ],
)
def test_limits_are_checked(
    stack: Stack,
    limits: tuple[int, int, int],
    message: str,
) -> None:
    with stack.session() as session:
        domains.create_domain(session, "example.com")
    refused(stack, lambda s: domains.set_limits(s, "example.com", *limits), message)
    refused(stack, lambda s: domains.create_domain(s, "other.example", *limits), message)


def test_setlimits_on_unknown_domain(stack: Stack) -> None:
    refused(
        stack,
        lambda s: domains.set_limits(s, "nowhere.example", 1, 1, 1),
        "domain 'nowhere.example' does not exist",
    )


def test_domain_delete_needs_really_when_in_use(stack: Stack) -> None:
    with stack.session() as session:
        users.create_user(session, stack.settings, "joe", "example.com", "pw")
        alternatives.add_alternative(session, "alt.example", "example.com")
    refused(
        stack,
        lambda s: domains.delete_domain(s, "example.com"),
        "domain 'example.com' has 1 users and 0 aliases; add --really to delete them with it",
    )
    with stack.session() as session:
        domains.delete_domain(session, "example.com", really=True)
    with stack.session() as session:
        assert session.scalars(select(User)).all() == []
        assert session.scalars(select(Alternative)).all() == []


def test_alternative_delete(stack: Stack) -> None:
    with stack.session() as session:
        domains.create_domain(session, "example.com")
        alternatives.add_alternative(session, "Alt.Example", "example.com")
    with stack.session() as session:
        alternatives.delete_alternative(session, "alt.example")
    refused(
        stack,
        lambda s: alternatives.delete_alternative(s, "alt.example"),
        "alternative domain 'alt.example' does not exist",
    )
    refused(
        stack,
        lambda s: alternatives.add_alternative(s, "alt.example", "nowhere.example"),
        "domain 'nowhere.example' does not exist",
    )


def test_relay_target_is_checked(stack: Stack) -> None:
    with stack.session() as session:
        relays.add_relay(session, "relay.example", "mx:smtp.example.net:2525")
    with stack.session() as session:
        relay = session.get(Relay, "relay.example")
        assert relay is not None and relay.smtp == "mx:smtp.example.net:2525"
        relays.delete_relay(session, "relay.example")
    refused(
        stack,
        lambda s: relays.add_relay(s, "relay.example", "smtp.example.net:99999"),
        "relay 'relay.example': target 'smtp.example.net:99999': "
        "port '99999' is not a number from 1 to 65535",
    )
    refused(
        stack,
        lambda s: relays.delete_relay(s, "relay.example"),
        "relayed domain 'relay.example' does not exist",
    )


def test_setmanager(stack: Stack) -> None:
    with stack.session() as session:
        users.create_user(session, stack.settings, "joe", "example.com", "pw")
    for _ in range(2):  # the second time changes nothing
        with stack.session() as session:
            managers.set_manager(session, "example.com", "joe")
    with stack.session() as session:
        user = session.get(User, "joe@example.com")
        assert user is not None and [d.name for d in user.manager_of] == ["example.com"]
    refused(
        stack,
        lambda s: managers.set_manager(s, "example.com", "ann"),
        "user 'ann@example.com' does not exist",
    )


# -- tokens ----------------------------------------------------------------------------------


def test_token_is_returned_once_and_stored_hashed(stack: Stack) -> None:
    with stack.session() as session:
        users.create_user(session, stack.settings, "joe", "example.com", "pw")
        token, raw = tokens.add_token(
            session, "joe@example.com", "phone", ["192.0.2.7", "2001:db8::/32,10.1.2.3/8"]
        )
    # Mailu's token shape: 32 lower-case hex characters (128 random bits).
    assert re.fullmatch(r"[0-9a-f]{32}", raw), raw
    assert is_token_shaped(raw)
    with stack.session() as session:
        stored = session.get(Token, token.id)
        assert stored is not None
        assert raw not in stored.password
        assert verify_token(stored.password, raw)[0]
        assert stored.ip == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]
        assert [t.id for t in tokens.list_tokens(session, "joe@example.com")] == [token.id]
    refused(
        stack,
        lambda s: tokens.add_token(s, "joe@example.com", "", ["not-a-net"]),
        "'not-a-net' is not an IP address or network",
    )


def test_token_delete_checks_its_owner(stack: Stack) -> None:
    with stack.session() as session:
        users.create_user(session, stack.settings, "joe", "example.com", "pw")
        users.create_user(session, stack.settings, "ann", "example.com", "pw")
        token, _raw = tokens.add_token(session, "joe@example.com")
    refused(
        stack,
        lambda s: tokens.delete_token(s, "ann@example.com", token.id),
        f"user 'ann@example.com' has no token {token.id}",
    )
    with stack.session() as session:
        tokens.delete_token(session, "joe@example.com", token.id)
    with stack.session() as session:
        assert session.get(Token, token.id) is None


# -- spam filing and fetched accounts ----------------------------------------------------------


def test_spam_settings_change_what_is_given_within_mailus_scale(stack: Stack) -> None:
    with stack.session() as session:
        users.create_user(session, stack.settings, "joe", "example.com", "secret")
        users.set_spam(session, "joe@example.com", threshold=40, mark_as_read=False)
    with stack.session() as session:
        user = session.get(User, "joe@example.com")
        assert user is not None
        assert (user.spam_enabled, user.spam_mark_as_read, user.spam_threshold) == (
            True,
            False,
            40,
        )
    refused(
        stack,
        lambda s: users.set_spam(s, "joe@example.com", threshold=101),
        "spam threshold 101: accepts a whole number from 0 to 100",
    )


def test_fetched_accounts_belong_to_their_user_and_take_usual_ports(stack: Stack) -> None:
    with stack.session() as session:
        users.create_user(session, stack.settings, "joe", "example.com", "secret")
        users.create_user(session, stack.settings, "ann", "example.com", "secret")
        values = fetches.FetchSettings("pop3", " pop.example.net ", "joe", tls=True, password="pw")
        made = fetches.add_fetch(session, "joe@example.com", values)
        session.flush()
        ident = made.id
    with stack.session() as session:
        (fetch,) = fetches.list_fetches(session, "joe@example.com")
        assert (fetch.host, fetch.port, fetch.password) == ("pop.example.net", 995, "pw")
        kept = replace(values, protocol="imap", tls=False, password=None)
        fetches.change_fetch(session, "joe@example.com", ident, kept)
    with stack.session() as session:
        fetch = fetches.user_fetch(session, "joe@example.com", ident)
        assert (fetch.protocol, fetch.port, fetch.password) == ("imap", 143, "pw")
    refused(
        stack,
        lambda s: fetches.delete_fetch(s, "ann@example.com", ident),
        f"'ann@example.com' has no fetched account {ident}",
    )
    refused(
        stack,
        lambda s: fetches.add_fetch(s, "ann@example.com", replace(values, password=None)),
        "password: a new fetched account needs the remote password",
    )
    refused(
        stack,
        lambda s: fetches.add_fetch(s, "ann@example.com", replace(values, port=70000)),
        "port: 70000 is out of range (1 to 65535)",
    )
    with stack.session() as session:
        fetches.delete_fetch(session, "joe@example.com", ident)
    with stack.session() as session:
        assert fetches.list_fetches(session, "joe@example.com") == []


def test_plain_fields_are_set_through_their_declared_parsers(stack: Stack) -> None:
    with stack.session() as session:
        users.create_user(session, stack.settings, "joe", "example.com", "secret")
        users.set_fields(session, "joe@example.com", {"displayed_name": "Joe", "enabled": False})
    with stack.session() as session:
        user = session.get(User, "joe@example.com")
        assert user is not None and (user.displayed_name, user.enabled) == ("Joe", False)
    refused(
        stack,
        lambda s: users.set_fields(s, "joe@example.com", {"displayed_name": "x" * 161}),
        "displayed name: longer than 160 characters",
    )
    # Quota and password have rules across fields and objects: their own operations only.
    refused(
        stack,
        lambda s: users.set_fields(s, "joe@example.com", {"quota_bytes": 0}),
        "quota_bytes: not a field that can be set this way",
    )
