"""The single login decision (roost.core.credentials)."""

from __future__ import annotations

import argon2
import pytest
from passlib import hash as ph

from roost.core import credentials, passwords
from roost.core.credentials import Login, LoginResult, check_login
from roost.core.directory import Directory, TokenEntry, UserEntry
from roost.core.passwords import CredentialCache, hash_password, hash_token

TOKEN = "0123456789abcdef0123456789abcdef"
LOCKED_TOKEN = "fedcba9876543210fedcba9876543210"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap Argon2id parameters keep the suite fast; the logic does not depend on them."""
    monkeypatch.setattr(
        passwords, "_HASHER", argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


def _user(email: str, password: str, **fields: object) -> UserEntry:
    local, _, domain = email.partition("@")
    return UserEntry(email, local, domain, password, **fields)  # type: ignore[arg-type]


@pytest.fixture
def directory() -> Directory:
    return Directory.build(
        domains=["example.com"],
        alternatives={"example.net": "example.com"},
        users=[
            _user("joe@example.com", hash_password("joe-secret")),
            _user("legacy@example.com", ph.sha512_crypt.using(rounds=5000).hash("old-secret")),
            _user("off@example.com", hash_password("off-secret"), enabled=False),
            _user("noimap@example.com", hash_password("secret"), enable_imap=False),
            _user("nopop@example.com", hash_password("secret"), enable_pop=False),
            _user("hexpw@example.com", hash_password(TOKEN)),
        ],
        tokens=[
            TokenEntry(7, "joe@example.com", hash_token(TOKEN), (), "phone"),
            TokenEntry(8, "joe@example.com", hash_token(LOCKED_TOKEN), ("192.0.2.0/24",)),
            TokenEntry(9, "off@example.com", hash_token(TOKEN)),
            TokenEntry(10, "noimap@example.com", ph.sha256_crypt.using(rounds=1000).hash(TOKEN)),
        ],
    )


@pytest.fixture
def cache() -> CredentialCache:
    return CredentialCache()


def login(
    directory: Directory,
    cache: CredentialCache,
    username: str,
    password: str,
    protocol: str = "imap",
    ip: str = "203.0.113.5",
    **kwargs: bool,
) -> Login:
    return check_login(directory, username, password, protocol, ip, cache, **kwargs)


def test_password_ok(directory: Directory, cache: CredentialCache) -> None:
    result = login(directory, cache, "joe@example.com", "joe-secret")
    assert result.result is LoginResult.OK and result.ok
    assert result.user is not None and result.user.email == "joe@example.com"
    assert not result.via_token
    assert result.rehash is None


def test_username_is_normalised_and_alternative_maps_to_primary(
    directory: Directory, cache: CredentialCache
) -> None:
    for username in ("JOE@Example.COM", "joe@example.net", "joe@EXAMPLE.NET."):
        result = login(directory, cache, username, "joe-secret")
        assert result.ok, username
        assert result.user is not None and result.user.email == "joe@example.com"


def test_wrong_password(directory: Directory, cache: CredentialCache) -> None:
    result = login(directory, cache, "joe@example.com", "wrong")
    assert result.result is LoginResult.BAD_CREDENTIALS
    assert result.user is not None
    assert result.reason == "badauth"
    assert login(directory, cache, "joe@example.com", "").result is LoginResult.BAD_CREDENTIALS


@pytest.mark.parametrize(
    "username",
    [
        "nobody@example.com",
        "joe@elsewhere.org",
        "joe",
        "",
        '"joe"@example.com',
        "a@@b",
        "joe@example.com\n",
        None,
        42,
        b"joe@example.com",
    ],
)
def test_unknown_or_malformed_user(
    directory: Directory, cache: CredentialCache, username: object
) -> None:
    result = login(directory, cache, username, "joe-secret")  # type: ignore[arg-type]
    assert result.result is LoginResult.UNKNOWN_USER
    assert result.user is None


def test_disabled_account_only_revealed_to_correct_password(
    directory: Directory, cache: CredentialCache
) -> None:
    assert login(directory, cache, "off@example.com", "off-secret").result is LoginResult.DISABLED
    assert login(directory, cache, "off@example.com", "off-secret").reason == "account disabled"
    assert login(directory, cache, "off@example.com", "guess").result is (
        LoginResult.BAD_CREDENTIALS
    )
    # A valid app token of a disabled account does not open it either.
    assert login(directory, cache, "off@example.com", TOKEN).result is LoginResult.DISABLED


@pytest.mark.parametrize(
    ("username", "protocol", "expected"),
    [
        ("noimap@example.com", "imap", LoginResult.PROTOCOL_DISABLED),
        ("noimap@example.com", "IMAP", LoginResult.PROTOCOL_DISABLED),
        ("noimap@example.com", "pop3", LoginResult.OK),
        ("noimap@example.com", "smtp", LoginResult.OK),
        ("noimap@example.com", "submission", LoginResult.OK),
        ("noimap@example.com", "sieve", LoginResult.OK),
        ("noimap@example.com", "lmtp", LoginResult.OK),
        ("nopop@example.com", "pop3", LoginResult.PROTOCOL_DISABLED),
        ("nopop@example.com", "imap", LoginResult.OK),
        ("nopop@example.com", "smtp", LoginResult.OK),
    ],
)
def test_protocol_switches(
    directory: Directory,
    cache: CredentialCache,
    username: str,
    protocol: str,
    expected: LoginResult,
) -> None:
    assert login(directory, cache, username, "secret", protocol).result is expected


def test_protocol_disabled_needs_correct_password(
    directory: Directory, cache: CredentialCache
) -> None:
    assert login(directory, cache, "noimap@example.com", "wrong").result is (
        LoginResult.BAD_CREDENTIALS
    )


def test_app_token(directory: Directory, cache: CredentialCache) -> None:
    result = login(directory, cache, "joe@example.com", TOKEN, "submission")
    assert result.ok and result.via_token
    assert result.token_id == 7
    assert result.reason == "token-7"
    assert result.rehash is None and result.token_rehash is None


def test_app_token_ip_restriction(directory: Directory, cache: CredentialCache) -> None:
    inside = login(directory, cache, "joe@example.com", LOCKED_TOKEN, ip="192.0.2.9")
    assert inside.ok and inside.token_id == 8
    outside = login(directory, cache, "joe@example.com", LOCKED_TOKEN, ip="198.51.100.1")
    assert outside.result is LoginResult.BAD_CREDENTIALS
    assert outside.reason == "badip: token-8"
    junk = login(directory, cache, "joe@example.com", LOCKED_TOKEN, ip="not an ip")
    assert junk.result is LoginResult.BAD_CREDENTIALS


def test_token_of_another_user_does_not_work(directory: Directory, cache: CredentialCache) -> None:
    assert login(directory, cache, "nopop@example.com", TOKEN).result is (
        LoginResult.BAD_CREDENTIALS
    )


def test_token_shaped_password_still_tried_as_password(
    directory: Directory, cache: CredentialCache
) -> None:
    result = login(directory, cache, "hexpw@example.com", TOKEN)
    assert result.ok and not result.via_token


def test_legacy_token_hash_is_upgraded(directory: Directory, cache: CredentialCache) -> None:
    result = login(directory, cache, "noimap@example.com", TOKEN, "smtp")
    assert result.ok and result.via_token and result.token_id == 10
    assert result.token_rehash is not None
    assert result.token_rehash.startswith("$pbkdf2-sha256$1$")
    assert result.rehash is None


def test_legacy_password_is_upgraded(directory: Directory, cache: CredentialCache) -> None:
    result = login(directory, cache, "legacy@example.com", "old-secret")
    assert result.ok
    assert result.rehash is not None and result.rehash.startswith("$argon2id$")
    assert passwords.verify_password(result.rehash, "old-secret") == (True, None)


@pytest.mark.parametrize("protocol", ["imap", "pop3", "smtp", "submission", "sieve"])
def test_require_token_refuses_passwords_on_mail_protocols(
    directory: Directory, cache: CredentialCache, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: object) -> tuple[bool, None]:
        raise AssertionError("a password was hashed although only tokens can succeed")

    monkeypatch.setattr(credentials, "verify_password", explode)
    refused = login(directory, cache, "joe@example.com", "joe-secret", protocol, require_token=True)
    assert refused.result is LoginResult.BAD_CREDENTIALS
    assert refused.reason == credentials.REQUIRE_TOKEN_REASON
    assert not refused.plain_guess  # not a wrong password: never remembered as one
    assert login(directory, cache, "joe@example.com", TOKEN, protocol, require_token=True).ok


def test_require_token_keeps_passwords_for_web_logins_and_webdav(
    directory: Directory, cache: CredentialCache
) -> None:
    for protocol in ("web", "sso", "webdav"):
        assert login(
            directory, cache, "joe@example.com", "joe-secret", protocol, require_token=True
        ).ok


def test_cache_spares_the_hash_on_repeat(
    directory: Directory, cache: CredentialCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert login(directory, cache, "joe@example.com", "joe-secret").ok
    assert login(directory, cache, "joe@example.com", TOKEN).ok

    def explode(*_args: object) -> tuple[bool, None]:
        raise AssertionError("verified again instead of using the cache")

    monkeypatch.setattr(credentials, "verify_password", explode)
    monkeypatch.setattr(credentials, "verify_token", explode)
    assert login(directory, cache, "joe@example.com", "joe-secret").ok
    assert login(directory, cache, "joe@example.com", TOKEN).via_token


def test_a_wrong_password_is_never_answered_from_the_cache(
    directory: Directory, cache: CredentialCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cheap "no" for cached accounts would time-tell them apart from non-accounts."""
    assert login(directory, cache, "joe@example.com", "joe-secret").ok
    calls: list[str] = []
    real = credentials.verify_password

    def counting(stored: str, plain: str) -> tuple[bool, str | None]:
        calls.append(plain)
        return real(stored, plain)

    monkeypatch.setattr(credentials, "verify_password", counting)
    assert login(directory, cache, "joe@example.com", "wrong").result is (
        LoginResult.BAD_CREDENTIALS
    )
    assert calls == ["wrong"]


def test_unknown_names_are_verified_against_the_dummy_hash(
    directory: Directory, cache: CredentialCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    dummy = hash_password("dummy")
    calls: list[tuple[str, str]] = []
    real = credentials.verify_password

    def counting(stored: str, plain: str) -> tuple[bool, str | None]:
        calls.append((stored, plain))
        return real(stored, plain)

    monkeypatch.setattr(credentials, "verify_password", counting)
    result = login(directory, cache, "nobody@example.com", "guess", dummy_hash=dummy)  # type: ignore[arg-type]
    assert result.result is LoginResult.UNKNOWN_USER and result.plain_guess
    assert calls == [(dummy, "guess")]
    # Without a dummy (or with AUTH_REQUIRE_TOKENS, where no account hashes) nothing is spent.
    calls.clear()
    login(directory, cache, "nobody@example.com", "guess")
    login(directory, cache, "nobody@example.com", "g", require_token=True, dummy_hash=dummy)  # type: ignore[arg-type]
    assert calls == []


def test_quick_login_answers_only_what_needs_no_hash(
    directory: Directory, cache: CredentialCache
) -> None:
    def quick(user: str, password: str, **kwargs: bool) -> Login | None:
        return credentials.quick_login(
            directory, user, password, "imap", "203.0.113.5", cache, **kwargs
        )

    assert quick("joe@example.com", "joe-secret") is None  # not cached yet: needs Argon2
    assert login(directory, cache, "joe@example.com", "joe-secret").ok
    cached = quick("joe@example.com", "joe-secret")
    assert cached is not None and cached.ok
    token = quick("joe@example.com", TOKEN)
    assert token is not None and token.via_token
    assert quick("joe@example.com", "f" * 32) is None  # token-shaped, no token: the password
    unknown = quick("nobody@example.com", "x")
    assert unknown is not None and unknown.result is LoginResult.UNKNOWN_USER
    assert quick("nobody@example.com", "x", equal_time=True) is None
    off = quick("off@example.com", TOKEN)
    assert off is not None and off.result is LoginResult.DISABLED


def test_failure_context_changes_with_the_stored_hashes(directory: Directory) -> None:
    joe = credentials.find_user(directory, "JOE@example.net")
    assert joe is not None and joe.email == "joe@example.com"
    before = credentials.failure_context(directory, joe, "joe@example.com")
    changed = _user("joe@example.com", hash_password("new"))
    assert credentials.failure_context(directory, changed, "joe@example.com") != before
    assert credentials.failure_context(directory, None, "a@x") != (
        credentials.failure_context(directory, None, "b@x")
    )


def test_cache_learns_the_replacement_hash(directory: Directory, cache: CredentialCache) -> None:
    result = login(directory, cache, "legacy@example.com", "old-secret")
    assert result.rehash is not None
    assert cache.check(result.rehash, "old-secret") is True


def test_garbage_password_and_protocol(directory: Directory, cache: CredentialCache) -> None:
    assert login(directory, cache, "joe@example.com", None).result is (  # type: ignore[arg-type]
        LoginResult.BAD_CREDENTIALS
    )
    assert login(directory, cache, "joe@example.com", "\udcff").result is (
        LoginResult.BAD_CREDENTIALS
    )
    assert login(directory, cache, "joe@example.com", "joe-secret", None).ok  # type: ignore[arg-type]
    assert login(directory, cache, "joe@example.com", "joe-secret", ip=None).ok  # type: ignore[arg-type]
