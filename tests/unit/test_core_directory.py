"""The gate's in-memory directory (roost.core.directory): Mailu's address resolution,
sender ownership and relayed-domain transports (core/admin/mailu/internal/views/postfix.py)."""

from __future__ import annotations

import pytest

from roost.core.directory import (
    AliasEntry,
    Directory,
    RelayEntry,
    TokenEntry,
    TransportError,
    UserEntry,
    like_to_matcher,
)
from roost.core.transport import relay_transport


def user(email: str, **fields: object) -> UserEntry:
    local, _, domain = email.partition("@")
    return UserEntry(email, local, domain, "$argon2id$unused", **fields)  # type: ignore[arg-type]


def alias(email: str, *destination: str, wildcard: bool = False, **fields: object) -> AliasEntry:
    local, _, domain = email.rpartition("@")
    return AliasEntry(email, local, domain, wildcard, tuple(destination), **fields)  # type: ignore[arg-type]


def build(users=(), aliases=(), **kwargs) -> Directory:  # type: ignore[no-untyped-def]
    kwargs.setdefault("domains", ["example.com", "other.org"])
    kwargs.setdefault("alternatives", {"example.net": "example.com"})
    return Directory.build(users=users, aliases=aliases, **kwargs)


@pytest.fixture
def mailu_example() -> Directory:
    """Mailu's resolution example: user joe, alias team -> joe, catch-all % -> catchall."""
    return build(
        users=[user("joe@example.com"), user("catchall@example.com")],
        aliases=[
            alias("team@example.com", "joe@example.com"),
            alias("%@example.com", "catchall@example.com", wildcard=True),
        ],
    )


# ---------------------------------------------------------------- resolution examples


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("team@example.com", ("joe@example.com",)),
        ("team+test@example.com", ("joe+test@example.com",)),
        ("joe+test@example.com", ("joe+test@example.com",)),
        ("random@example.com", ("catchall@example.com",)),
        ("random+x@example.com", ("catchall@example.com",)),
        ("joe@example.com", ("joe@example.com",)),
    ],
)
def test_reference_examples(mailu_example: Directory, address: str, expected: tuple) -> None:
    assert mailu_example.resolve(address, "+") == expected


def test_without_delimiter_detail_is_part_of_local(mailu_example: Directory) -> None:
    assert mailu_example.resolve("joe+test@example.com", "") == ("catchall@example.com",)
    assert mailu_example.resolve("team+test@example.com", "") == ("catchall@example.com",)


def test_several_delimiters(mailu_example: Directory) -> None:
    assert mailu_example.resolve("team-x+y@example.com", "+-") == ("joe-x+y@example.com",)


def test_case_insensitive(mailu_example: Directory) -> None:
    assert mailu_example.resolve("TEAM@Example.COM", "+") == ("joe@example.com",)
    assert mailu_example.resolve("Joe+Test@example.com", "+") == ("joe+test@example.com",)
    assert mailu_example.resolve("team@example.com.", "+") == ("joe@example.com",)


def test_unknown_without_catch_all() -> None:
    directory = build(users=[user("joe@example.com")])
    assert directory.resolve("nobody@example.com", "+") is None
    assert directory.resolve("joe@elsewhere.org", "+") is None


# ---------------------------------------------------------------------- keys refused


@pytest.mark.parametrize(
    "key",
    [
        '"joe"@example.com',
        '"joe@example.com',
        "joe@x@example.com",
        "@example.com",
        "jo e@example.com",
        "a,b@example.com",
        "",
        "joe@",
        "joe@[192.0.2.1]",
    ],
)
def test_refused_keys(mailu_example: Directory, key: str) -> None:
    assert mailu_example.resolve(key, "+") is None
    assert mailu_example.sender_logins(key, "+", ()) is None


def test_garbage_types_never_raise(mailu_example: Directory) -> None:
    for junk in (None, 3, b"joe@example.com"):
        assert mailu_example.resolve(junk, "+") is None  # type: ignore[arg-type]
        assert mailu_example.user(junk) is None  # type: ignore[arg-type]
        assert mailu_example.sender_logins(junk, "+", ()) is None  # type: ignore[arg-type]
        assert mailu_example.has_domain(junk) is False  # type: ignore[arg-type]
        assert mailu_example.transport(junk) is None  # type: ignore[arg-type]


def test_bare_domain_key() -> None:
    directory = build()
    assert directory.resolve("example.com", "+") == ("example.com",)
    assert directory.resolve("example.net", "+") == ("example.com",)  # alternative -> primary
    assert directory.resolve("Bücher.example", "+") is None
    assert directory.resolve("gmail.com", "+") is None


# ---------------------------------------------------------------------- users


def test_disabled_user_still_resolves_to_itself_but_is_refused() -> None:
    # Mailu delivers to a disabled user anyway; Roost keeps the address known to
    # Postfix (reject_unlisted_sender) and refuses it at RCPT through recipient_disabled.
    directory = build(users=[user("joe@example.com", enabled=False), user("ann@example.com")])
    assert directory.resolve("joe@example.com", "+") == ("joe@example.com",)
    assert directory.mailbox("joe@example.com") == "joe@example.com"
    for address in ("joe@example.com", "Joe+tag@example.com", "joe@example.net"):
        assert directory.recipient_disabled(address, "+")
    for address in ("ann@example.com", "nobody@example.com", "example.com", "joe@", "x@y@z"):
        assert not directory.recipient_disabled(address, "+")


def test_disabled_user_is_refused_even_when_forwarding() -> None:
    joe = user(
        "joe@example.com",
        enabled=False,
        forward_enabled=True,
        forward_destination=("a@elsewhere.org",),
    )
    assert build(users=[joe]).recipient_disabled("joe@example.com", "+")


def test_aliases_skip_disabled_users_and_keep_delivering_to_the_others() -> None:
    directory = build(
        users=[user("joe@example.com", enabled=False), user("ann@example.com")],
        aliases=[
            alias("team@example.com", "joe@example.com", "ann@example.com", "x@elsewhere.org"),
            alias("solo@example.com", "joe+work@example.net"),
            alias("%@other.org", "joe@example.com", wildcard=True),
        ],
    )
    assert directory.resolve("team@example.com", "+") == ("ann@example.com", "x@elsewhere.org")
    assert directory.resolve("team+x@example.com", "+") == (
        "ann+x@example.com",
        "x+x@elsewhere.org",
    )
    assert not directory.recipient_disabled("team@example.com", "+")
    # Every destination disabled: the alias is refused like the user.
    assert directory.resolve("solo@example.com", "+") is None
    assert directory.recipient_disabled("solo@example.com", "+")
    assert directory.recipient_disabled("anyone@other.org", "+")


def test_forwarding_to_a_disabled_user_keeps_the_mail() -> None:
    ann = user(
        "ann@example.com",
        forward_enabled=True,
        forward_destination=("joe@example.com", "a@elsewhere.org"),
        forward_keep=False,
    )
    only_joe = user(
        "bea@example.com",
        forward_enabled=True,
        forward_destination=("joe@example.com",),
        forward_keep=False,
    )
    directory = build(users=[ann, only_joe, user("joe@example.com", enabled=False)])
    assert directory.resolve("ann@example.com", "+") == ("a@elsewhere.org",)
    assert directory.resolve("bea@example.com", "+") == ("bea@example.com",)


def test_forward_with_keep() -> None:
    joe = user(
        "joe@example.com",
        forward_enabled=True,
        forward_destination=("b@elsewhere.org", "a@elsewhere.org"),
        forward_keep=True,
    )
    directory = build(users=[joe])
    assert directory.resolve("joe@example.com", "+") == (
        "a@elsewhere.org",
        "b@elsewhere.org",
        "joe@example.com",
    )
    assert directory.resolve("joe+x@example.com", "+") == (
        "a@elsewhere.org",
        "b@elsewhere.org",
        "joe+x@example.com",
    )


def test_forward_without_keep() -> None:
    joe = user(
        "joe@example.com",
        forward_enabled=True,
        forward_destination=("a@elsewhere.org",),
        forward_keep=False,
    )
    directory = build(users=[joe])
    assert directory.resolve("joe@example.com", "+") == ("a@elsewhere.org",)
    # Sender ownership forces keep on (Mailu's /postfix/sender/login).
    assert directory.resolve_for_sender("joe@example.com", "+") == (
        "a@elsewhere.org",
        "joe@example.com",
    )


def test_forward_enabled_with_empty_list_keeps_mail() -> None:
    joe = user("joe@example.com", forward_enabled=True, forward_keep=False)
    assert build(users=[joe]).resolve("joe@example.com", "+") == ("joe@example.com",)


def test_forward_disabled_ignores_list() -> None:
    joe = user("joe@example.com", forward_destination=("a@elsewhere.org",))
    assert build(users=[joe]).resolve("joe@example.com", "+") == ("joe@example.com",)


def test_forward_destinations_punycoded_and_deduplicated() -> None:
    joe = user(
        "joe@example.com",
        forward_enabled=True,
        forward_destination=("ann@Bücher.Example", "ann@xn--bcher-kva.example", " "),
        forward_keep=False,
    )
    assert build(users=[joe]).resolve("joe@example.com", "+") == ("ann@xn--bcher-kva.example",)


def test_user_beats_alias_and_wildcard() -> None:
    directory = build(
        users=[user("joe@example.com")],
        aliases=[
            alias("joe@example.com", "other@example.com"),
            alias("j%@example.com", "other@example.com", wildcard=True),
        ],
    )
    assert directory.resolve("joe@example.com", "+") == ("joe@example.com",)


def test_full_local_user_before_stripped_user() -> None:
    directory = build(users=[user("joe@example.com"), user("joe+x@example.com")])
    assert directory.resolve("joe+x@example.com", "+") == ("joe+x@example.com",)
    assert directory.resolve("joe+x@example.com", "+") == ("joe+x@example.com",)
    assert directory.user("joe+x@example.com").email == "joe+x@example.com"  # type: ignore[union-attr]


def test_user_of_an_address_strips_the_detail_and_follows_alternatives() -> None:
    directory = build(users=[user("joe@example.com"), user("joe+x@example.com")])
    for address, expected in (
        ("joe+news@example.net", "joe@example.com"),
        ("JOE@example.com", "joe@example.com"),
        ("joe+x@example.com", "joe+x@example.com"),  # the full local part first
    ):
        found = directory.user_of(address, "+")
        assert found is not None and found.email == expected, address
    assert directory.user_of("joe+news@example.com", "") is None  # no delimiter: no detail
    for key in ("ann@example.com", "joe@elsewhere.test", "example.com", '"joe"@example.com'):
        assert directory.user_of(key, "+") is None, key


# ---------------------------------------------------------------------- alternatives


def test_alternative_domain() -> None:
    directory = build(
        users=[user("joe@example.com")],
        aliases=[alias("team@example.com", "joe@example.com")],
    )
    assert directory.resolve("joe@example.net", "+") == ("joe@example.com",)
    assert directory.resolve("joe+x@example.net", "+") == ("joe+x@example.com",)
    assert directory.resolve("team@example.net", "+") == ("joe@example.com",)
    assert directory.user("JOE@example.net").email == "joe@example.com"  # type: ignore[union-attr]
    assert directory.mailbox("joe@example.net") == "joe@example.com"
    assert directory.mailbox("ann@example.net") is None


def test_domain_queries() -> None:
    directory = build(relays=[RelayEntry("relayed.org", "")])
    assert directory.canonical_domain("example.com") == "example.com"
    assert directory.canonical_domain("EXAMPLE.NET.") == "example.com"
    assert directory.canonical_domain("relayed.org") is None
    assert directory.canonical_domain("x..y") is None
    assert directory.is_local_domain("example.net")
    assert not directory.is_local_domain("gmail.com")
    assert directory.has_domain("example.com")
    assert directory.has_domain("example.net")
    assert not directory.has_domain("relayed.org")
    assert not directory.has_domain("[192.0.2.1]")
    assert not directory.has_domain("")
    assert directory.relay_domain("relayed.org")
    assert directory.relay_domain("RELAYED.org")
    assert not directory.relay_domain("example.com")


def test_idn_domain() -> None:
    directory = Directory.build(
        domains=["xn--bcher-kva.example"],
        users=[user("jöe@xn--bcher-kva.example")],
    )
    assert directory.has_domain("bücher.example")
    assert directory.mailbox("JÖE@Bücher.Example") == "jöe@xn--bcher-kva.example"
    assert directory.resolve("jöe@bücher.example", "+") == ("jöe@xn--bcher-kva.example",)


def test_records_are_normalised_when_built() -> None:
    directory = Directory.build(
        domains=["Bücher.Example"],
        users=[UserEntry("Joe@Bücher.Example", "Joe", "Bücher.Example", "h")],
        aliases=[
            AliasEntry(
                "Team@Bücher.Example", "Team", "Bücher.Example", False, ("Joe@Bücher.Example",)
            )
        ],
        tokens=[TokenEntry(1, "Joe@Bücher.Example", "h")],
    )
    entry = directory.user("joe@xn--bcher-kva.example")
    assert entry is not None
    assert (entry.email, entry.localpart, entry.domain) == (
        "joe@xn--bcher-kva.example",
        "joe",
        "xn--bcher-kva.example",
    )
    assert directory.resolve("team@xn--bcher-kva.example", "") == ("Joe@xn--bcher-kva.example",)
    assert len(directory.tokens_of("joe@xn--bcher-kva.example")) == 1


# ---------------------------------------------------------------------- aliases


def test_disabled_alias_is_ignored() -> None:
    directory = build(
        aliases=[
            alias("team@example.com", "joe@example.com", disabled=True),
            alias("%@example.com", "catchall@example.com", wildcard=True),
        ]
    )
    assert directory.resolve("team@example.com", "+") == ("catchall@example.com",)


def test_disabled_catch_all_is_ignored() -> None:
    directory = build(
        aliases=[alias("%@example.com", "c@example.com", wildcard=True, disabled=True)]
    )
    assert directory.resolve("anything@example.com", "+") is None


def test_alias_of_disabled_owner_is_inactive() -> None:
    directory = build(
        users=[user("ann@example.com", enabled=False), user("joe@example.com")],
        aliases=[
            alias("anon1@example.com", "ann@example.com", owner_email="ann@example.com"),
            alias("anon2@example.com", "joe@example.com", owner_email="joe@example.com"),
            alias("anon3@example.com", "joe@example.com", owner_email="gone@example.com"),
        ],
    )
    assert directory.resolve("anon1@example.com", "+") is None
    assert directory.resolve("anon2@example.com", "+") == ("joe@example.com",)
    assert directory.resolve("anon3@example.com", "+") is None


def test_explicit_alias_reinserts_detail_in_every_destination() -> None:
    directory = build(aliases=[alias("team@example.com", "joe@example.com", "ann@other.org")])
    assert directory.resolve("team+x@example.com", "+") == (
        "ann+x@other.org",
        "joe+x@example.com",
    )


def test_exact_alias_for_full_local_wins_over_stripped() -> None:
    directory = build(
        aliases=[
            alias("team@example.com", "joe@example.com"),
            alias("team+sales@example.com", "ann@example.com"),
        ]
    )
    assert directory.resolve("team+sales@example.com", "+") == ("ann@example.com",)
    assert directory.resolve("team+other@example.com", "+") == ("joe+other@example.com",)


def test_exact_before_wildcard() -> None:
    directory = build(
        aliases=[
            alias("%@example.com", "catchall@example.com", wildcard=True),
            alias("sales%@example.com", "wild@example.com", wildcard=True),
            alias("sales@example.com", "exact@example.com"),
        ]
    )
    assert directory.resolve("sales@example.com", "+") == ("exact@example.com",)
    assert directory.resolve("salesforce@example.com", "+") == ("wild@example.com",)


def test_longest_wildcard_first() -> None:
    directory = build(
        aliases=[
            alias("%@example.com", "catchall@example.com", wildcard=True),
            alias("a%@example.com", "a@example.com", wildcard=True),
            alias("ab%@example.com", "ab@example.com", wildcard=True),
            alias("%@other.org", "other@other.org", wildcard=True),
        ]
    )
    assert directory.resolve("abc@example.com", "+") == ("ab@example.com",)
    assert directory.resolve("axe@example.com", "+") == ("a@example.com",)
    assert directory.resolve("zed@example.com", "+") == ("catchall@example.com",)
    assert directory.resolve("zed@other.org", "+") == ("other@other.org",)


def test_stripped_wildcard_keeps_destinations_as_is() -> None:
    directory = build(aliases=[alias("sales%@example.com", "wild@example.com", wildcard=True)])
    # A wildcard matched on the stripped part gets no detail re-inserted.
    assert directory.resolve("salesx+y@example.com", "+") == ("wild@example.com",)


def test_wildcard_on_stripped_before_wildcard_on_full_local() -> None:
    directory = build(
        aliases=[
            alias("joe@example.com", "exact@example.com"),
            alias("%+vip@example.com", "vip@example.com", wildcard=True),
        ]
    )
    # The explicit alias for the stripped part comes first (with detail re-inserted) ...
    assert directory.resolve("joe+vip@example.com", "+") == ("exact+vip@example.com",)
    # ... and the full-local wildcard is the last resort.
    assert directory.resolve("ann+vip@example.com", "+") == ("vip@example.com",)


def test_wildcard_underscore_and_escaping() -> None:
    directory = build(
        aliases=[
            alias("a_c@example.com", "one@example.com", wildcard=True),
            alias("x.%@example.com", "dot@example.com", wildcard=True),
        ]
    )
    assert directory.resolve("abc@example.com", "") == ("one@example.com",)
    assert directory.resolve("ac@example.com", "") is None
    assert directory.resolve("abbc@example.com", "") is None
    assert directory.resolve("x.y@example.com", "") == ("dot@example.com",)
    assert directory.resolve("xzy@example.com", "") is None  # '.' is literal, not "any"


def test_wildcard_is_case_insensitive() -> None:
    directory = build(aliases=[alias("Sales%@example.com", "s@example.com", wildcard=True)])
    assert directory.resolve("SALESX@example.com", "") == ("s@example.com",)


def test_alias_destinations_punycoded_sorted_deduplicated() -> None:
    directory = build(
        aliases=[
            alias(
                "team@example.com",
                "zed@example.com",
                "ann@Bücher.Example",
                "zed@example.com",
                "ann@xn--bcher-kva.example",
            )
        ]
    )
    assert directory.resolve("team@example.com", "") == (
        "ann@xn--bcher-kva.example",
        "zed@example.com",
    )


def test_alias_with_empty_destination_answers_not_found() -> None:
    directory = build(
        aliases=[
            alias("team@example.com"),
            alias("%@example.com", "c@example.com", wildcard=True),
        ]
    )
    assert directory.resolve("team@example.com", "") is None


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("%", ["", "a", "anything.at+all"], []),
        ("%%", ["", "x"], []),
        ("abc", ["abc"], ["abcd", "ab"]),
        ("ab%", ["ab", "abc"], ["a", "xab"]),
        ("%ab", ["ab", "xab"], ["abx"]),
        ("a%b", ["ab", "axxb"], ["a", "ba"]),
        ("a_b", ["axb"], ["ab", "axxb"]),
        ("a.b", ["a.b"], ["axb"]),
        ("a+%", ["a+b"], ["ab"]),
        ("(a)%", ["(a)x"], ["ax"]),
        ("AB%", ["abc"], []),
    ],
)
def test_like_to_matcher(pattern: str, matches: list[str], misses: list[str]) -> None:
    match = like_to_matcher(pattern)
    for local in matches:
        assert match(local), (pattern, local)
    for local in misses:
        assert not match(local), (pattern, local)


# ---------------------------------------------------------------------- sender ownership


def test_sender_logins_own_address_and_aliases(mailu_example: Directory) -> None:
    assert mailu_example.sender_logins("joe@example.com", "+", ()) == ("joe@example.com",)
    assert mailu_example.sender_logins("joe+x@example.com", "+", ()) == ("joe@example.com",)
    assert mailu_example.sender_logins("team+x@example.com", "+", ()) == ("joe@example.com",)
    assert mailu_example.sender_logins("team@example.net", "+", ()) == ("joe@example.com",)
    # Wildcard and catch-all aliases count too.
    assert mailu_example.sender_logins("random@example.com", "+", ()) == ("catchall@example.com",)


def test_sender_logins_forwarding_user_keeps_itself() -> None:
    joe = user(
        "joe@example.com",
        forward_enabled=True,
        forward_destination=("a@elsewhere.org",),
        forward_keep=False,
    )
    assert build(users=[joe]).sender_logins("joe@example.com", "+", ()) == (
        "a@elsewhere.org",
        "joe@example.com",
    )


def test_sender_logins_wildcard_senders() -> None:
    directory = build(users=[user("joe@example.com")])
    wildcard = ["Admin@Example.com", " relay@example.com "]
    assert directory.sender_logins("joe@example.com", "+", wildcard) == (
        "admin@example.com",
        "joe@example.com",
        "relay@example.com",
    )
    # External senders are allowed only to WILDCARD_SENDERS logins.
    assert directory.sender_logins("x@gmail.com", "+", wildcard) == (
        "admin@example.com",
        "relay@example.com",
    )
    assert directory.sender_logins("x@gmail.com", "+", ()) is None
    # A key without '@' yields WILDCARD_SENDERS or nothing.
    assert directory.sender_logins("joe", "+", wildcard) == (
        "admin@example.com",
        "relay@example.com",
    )
    assert directory.sender_logins("joe", "+", ()) is None
    assert directory.sender_logins("nobody@example.com", "+", ()) is None


def test_sender_logins_allow_spoofing_is_scoped_to_own_domain() -> None:
    directory = build(
        users=[
            user("joe@example.com"),
            user("boss@example.com", allow_spoofing=True),
            user("spoofer@other.org", allow_spoofing=True),
        ]
    )
    assert directory.sender_logins("joe@example.com", "+", ()) == (
        "boss@example.com",
        "joe@example.com",
    )
    assert directory.sender_logins("nobody@example.com", "+", ()) == ("boss@example.com",)
    # Alternatives map to the primary's spoofers.
    assert directory.sender_logins("nobody@example.net", "+", ()) == ("boss@example.com",)
    assert directory.sender_logins("nobody@other.org", "+", ()) == ("spoofer@other.org",)
    assert directory.sender_logins("x@gmail.com", "+", ()) is None
    assert directory.spoofers("example.net") == ("boss@example.com",)


def test_sender_logins_strip_detail_before_resolving() -> None:
    directory = build(
        users=[user("joe@example.com")],
        aliases=[alias("joe+x@example.com", "ann@example.com")],
    )
    # The alias named joe+x is not consulted: the detail is stripped first (as Mailu does).
    assert directory.sender_logins("joe+x@example.com", "+", ()) == ("joe@example.com",)


# ---------------------------------------------------------------------- transports


@pytest.mark.parametrize(
    ("smtp", "expected"),
    [
        ("", "smtp:relayed.org"),
        (None, "smtp:relayed.org"),
        (":2525", "smtp:relayed.org:2525"),
        ("mx.target.net", "smtp:[mx.target.net]"),
        ("MX.Target.NET", "smtp:[mx.target.net]"),
        ("mx.target.net:2525", "smtp:[mx.target.net]:2525"),
        ("mx:target.net", "smtp:target.net"),
        ("mx:target.net:2525", "smtp:target.net:2525"),
        ("mx:", "smtp:relayed.org"),
        ("lmtp:target.net", "lmtp:target.net"),
        ("lmtp:target.net:24", "lmtp:target.net:24"),
        ("[2001:db8::1]", "smtp:[ipv6:2001:db8::1]"),
        ("[2001:DB8:0::1]:2525", "smtp:[ipv6:2001:db8::1]:2525"),
        ("lmtp:[2001:db8::1]:24", "lmtp:[ipv6:2001:db8::1]:24"),
        ("[192.0.2.1]:25", "smtp:[192.0.2.1]:25"),
        ("192.0.2.1", "smtp:[192.0.2.1]"),
        ("[mx.target.net]:25", "smtp:[mx.target.net]:25"),
        ("bücher.example", "smtp:[xn--bcher-kva.example]"),
        ("smtp_relay", "smtp:[smtp_relay]"),
    ],
)
def test_relay_transport(smtp: str | None, expected: str) -> None:
    assert relay_transport("relayed.org", smtp) == expected


@pytest.mark.parametrize(
    ("smtp", "message"),
    [
        ("mx:[2001:db8::1]", "mx: cannot be used"),
        ("[2001:db8::1", "missing ]"),
        ("[2001:db8::1]x", "after ]"),
        ("[2001:db8::1]:", "port"),
        ("target.net:smtp", "port 'smtp'"),
        ("target.net:0", "port"),
        ("target.net:65536", "port"),
        ("target.net:", "port"),
        ("lmtp:", "lmtp: needs a host"),
        ("lmtp::24", "lmtp: needs a host"),
        ("tar get.net", "not valid"),
        ("-bad.net", "not valid"),
        ("[]", "empty host"),
    ],
)
def test_relay_transport_errors(smtp: str, message: str) -> None:
    with pytest.raises(TransportError) as info:
        relay_transport("relayed.org", smtp)
    assert message in str(info.value)
    assert "relayed.org" in str(info.value)


def test_directory_transport() -> None:
    directory = build(
        relays=[
            RelayEntry("relayed.org", "mx:mx.relayed.org"),
            RelayEntry("broken.org", "mx:[2001:db8::1]"),
            RelayEntry("plain.org", None),
        ]
    )
    assert directory.transport("relayed.org") == "smtp:mx.relayed.org"
    assert directory.transport("joe@relayed.org") == "smtp:mx.relayed.org"
    assert directory.transport("Joe@RELAYED.org") == "smtp:mx.relayed.org"
    assert directory.transport("plain.org") == "smtp:plain.org"
    assert directory.transport("example.com") is None
    assert directory.transport("joe@example.com") is None
    assert directory.transport("*") is None
    assert directory.transport("[192.0.2.1]") is None
    assert directory.transport("joe@[192.0.2.1]") is None
    with pytest.raises(TransportError):
        directory.transport("x@broken.org")


# ---------------------------------------------------------------------- views and tokens


def test_counts_and_views() -> None:
    directory = build(
        users=[user("joe@example.com"), user("ann@example.com")],
        aliases=[alias("team@example.com", "joe@example.com", disabled=True)],
        relays=[RelayEntry("relayed.org")],
        tokens=[
            TokenEntry(2, "joe@example.com", "h2"),
            TokenEntry(1, "joe@example.com", "h1", ("192.0.2.0/24",)),
            TokenEntry(3, "ann@example.com", "h3"),
        ],
    )
    assert directory.counts() == {
        "domains": 2,
        "alternatives": 1,
        "relays": 1,
        "users": 2,
        "aliases": 1,
        "tokens": 3,
    }
    assert len(directory.users) == 2
    assert directory.domains == frozenset({"example.com", "other.org"})
    assert dict(directory.alternatives) == {"example.net": "example.com"}
    assert [t.id for t in directory.tokens_of("joe@example.com")] == [1, 2]
    assert directory.tokens_of("nobody@example.com") == ()
    with pytest.raises(TypeError):
        directory.users["x"] = user("x@example.com")  # type: ignore[index]


def test_empty_directory_answers_nothing() -> None:
    directory = Directory()
    assert directory.resolve("joe@example.com", "+") is None
    assert directory.sender_logins("joe@example.com", "+", ()) is None
    assert directory.user("joe@example.com") is None
    assert not directory.has_domain("example.com")
    assert directory.counts()["users"] == 0


def test_alternative_cannot_shadow_a_domain() -> None:
    directory = Directory.build(
        domains=["example.com", "example.net"], alternatives={"example.net": "example.com"}
    )
    assert directory.canonical_domain("example.net") == "example.net"


def test_invalid_rows_are_skipped() -> None:
    directory = Directory.build(
        domains=["example.com", "x..y", ""],
        users=[user("joe@example.com"), UserEntry("broken", "broken", "", "h")],
        aliases=[AliasEntry("@example.com", "", "example.com", False, ("joe@example.com",))],
    )
    assert directory.domains == frozenset({"example.com"})
    assert list(directory.users) == ["joe@example.com"]


def test_reply_active() -> None:
    import datetime as dt

    joe = user(
        "joe@example.com",
        reply_enabled=True,
        reply_startdate=dt.date(2024, 1, 1),
        reply_enddate=dt.date(2024, 1, 31),
    )
    assert joe.reply_active(dt.date(2024, 1, 1))
    assert joe.reply_active(dt.date(2024, 1, 31))
    assert not joe.reply_active(dt.date(2024, 2, 1))
    assert not user("ann@example.com").reply_active(dt.date(2024, 1, 15))


def test_build_scale() -> None:
    """10,000 users and 10,000 aliases over 100 domains build and answer correctly.

    Speed is measured by benchmarks, not asserted here (bench/gate_lookups.py).
    """
    domains = [f"d{n}.example" for n in range(100)]
    users = [user(f"u{n}@{domains[n % 100]}") for n in range(10_000)]
    aliases = [
        alias(f"a{n}@{domains[n % 100]}", f"u{n}@{domains[n % 100]}", wildcard=n % 50 == 0)
        for n in range(10_000)
    ]
    directory = Directory.build(domains=domains, users=users, aliases=aliases)
    assert directory.counts()["users"] == 10_000
    assert directory.resolve("u1234@d34.example", "+") == ("u1234@d34.example",)
    assert directory.resolve("a1234@d34.example", "+") == ("u1234@d34.example",)
    assert directory.resolve("a100@d0.example", "+") == ("u100@d0.example",)
