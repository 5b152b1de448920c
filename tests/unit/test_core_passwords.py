"""Password hashing, legacy formats, the credential caches and app tokens."""

from __future__ import annotations

import argon2
import bcrypt
import pytest
from passlib import hash as ph

from roost.core import passwords
from roost.core.directory import TokenEntry
from roost.core.passwords import (
    CredentialCache,
    FailedGuesses,
    dummy_hash,
    generate_token,
    hash_password,
    hash_token,
    is_token_shaped,
    token_allows_ip,
    verify_password,
    verify_token,
)

PASSWORD = "correct horse battery staple ✓"
PRODUCTION_HASHER = passwords._HASHER


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """New hashes use cheap Argon2id parameters so the suite stays fast; the production
    parameters are checked once in test_module_hasher_defaults_are_rfc9106."""
    monkeypatch.setattr(
        passwords, "_HASHER", argon2.PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    )


def _bcrypt(prefix: str, password: str = PASSWORD) -> str:
    hashed = bcrypt.hashpw(password.encode("utf-8")[:72], bcrypt.gensalt(4)).decode()
    return prefix + hashed[4:]


# Every format a Mailu database can hold (its passlib context), generated here with the same
# libraries that produce them in the wild (low cost factors keep the test fast).
LEGACY = {
    "bcrypt_sha256 v2 (Mailu's format)": ph.bcrypt_sha256.using(rounds=4).hash(PASSWORD),
    "bcrypt_sha256 v1": ph.bcrypt_sha256.using(rounds=4, version=1).hash(PASSWORD),
    "bcrypt $2b$": _bcrypt("$2b$"),
    "bcrypt $2a$": _bcrypt("$2a$"),
    "bcrypt $2y$": _bcrypt("$2y$"),
    "sha512_crypt $6$": ph.sha512_crypt.using(rounds=5000).hash(PASSWORD),
    "sha256_crypt $5$": ph.sha256_crypt.using(rounds=5000).hash(PASSWORD),
    "md5_crypt $1$": ph.md5_crypt.hash(PASSWORD),
    "pbkdf2_sha256": ph.pbkdf2_sha256.using(rounds=1000).hash(PASSWORD),
    "pbkdf2_sha512": ph.pbkdf2_sha512.using(rounds=1000).hash(PASSWORD),
    "pbkdf2_sha1": ph.pbkdf2_sha1.using(rounds=1000).hash(PASSWORD),
    "des_crypt": ph.des_crypt.hash("secret12"),
    "bsdi_crypt": ph.bsdi_crypt.using(rounds=101).hash(PASSWORD),
    "argon2i": argon2.PasswordHasher(1, 8, 1, type=argon2.Type.I).hash(PASSWORD),
    "weak argon2id": argon2.PasswordHasher(1, 8, 1).hash(PASSWORD),
}


def _plain_for(name: str) -> str:
    return "secret12" if name == "des_crypt" else PASSWORD


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_legacy_hash_verifies_and_is_upgraded(name: str) -> None:
    stored = LEGACY[name]
    ok, replacement = verify_password(stored, _plain_for(name))
    assert ok, name
    assert replacement is not None and replacement.startswith("$argon2id$")
    assert verify_password(replacement, _plain_for(name)) == (True, None)


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_legacy_hash_rejects_wrong_password(name: str) -> None:
    assert verify_password(LEGACY[name], "wrong password") == (False, None)


@pytest.mark.parametrize(
    ("prefix", "name"),
    [
        ("{BLF-CRYPT}", "bcrypt $2b$"),
        ("{BLF-CRYPT}", "bcrypt $2y$"),
        ("{SHA512-CRYPT}", "sha512_crypt $6$"),
        ("{SHA256-CRYPT}", "sha256_crypt $5$"),
        ("{MD5-CRYPT}", "md5_crypt $1$"),
        ("{CRYPT}", "sha512_crypt $6$"),
        ("{CRYPT}", "des_crypt"),
        ("{PBKDF2}", "pbkdf2_sha512"),
        ("{pbkdf2}", "pbkdf2_sha256"),
        ("{ARGON2ID}", "weak argon2id"),
    ],
)
def test_dovecot_scheme_prefixes_are_stripped(prefix: str, name: str) -> None:
    ok, replacement = verify_password(prefix + LEGACY[name], _plain_for(name))
    assert ok
    assert replacement is not None and replacement.startswith("$argon2id$")
    assert verify_password(prefix + LEGACY[name], "wrong") == (False, None)


def test_new_hash_is_argon2id_and_current() -> None:
    stored = hash_password(PASSWORD)
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, PASSWORD) == (True, None)
    assert verify_password(stored, PASSWORD + "x") == (False, None)
    # A current hash behind a prefix verifies but is rewritten without it.
    ok, replacement = verify_password("{ARGON2ID}" + stored, PASSWORD)
    assert ok and replacement is not None and not replacement.startswith("{")


def test_empty_password_cannot_be_hashed() -> None:
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


def test_stronger_argon2id_is_not_downgraded() -> None:
    stronger = argon2.PasswordHasher(time_cost=3, memory_cost=64, parallelism=1).hash("pw")
    assert verify_password(stronger, "pw") == (True, None)


def test_bcrypt_long_password_is_truncated_like_legacy_libraries() -> None:
    long_password = "x" * 100
    stored = _bcrypt("$2b$", long_password)
    assert verify_password(stored, long_password)[0]
    assert verify_password(stored, "x" * 72)[0]  # bcrypt only ever read 72 bytes


@pytest.mark.parametrize(
    ("stored", "plain"),
    [
        ("", PASSWORD),
        (LEGACY["bcrypt $2b$"], ""),
        ("", ""),
        ("plaintext", "plaintext"),
        ("{PLAIN}secret", "secret"),
        ("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "secret"),
        ("{CLEARTEXT}secret", "secret"),
        ("{UNKNOWN}$6$salt$hash", "secret"),
        ("{SHA512-CRYPT}", "secret"),
        ("$2b$garbage", "secret"),
        ("$2b$04$" + "x" * 53, "secret"),
        ("$argon2id$garbage", "secret"),
        ("$6$", "secret"),
        ("$bcrypt-sha256$garbage", "secret"),
        ("$pbkdf2-sha256$x$y$z", "secret"),
        ("$scrypt$ln=4,r=8,p=1$c2FsdA$aGFzaA", "secret"),
        ("\x00\xff", "secret"),
    ],
)
def test_never_verifies_and_never_raises(stored: str, plain: str) -> None:
    assert verify_password(stored, plain) == (False, None)


def test_non_text_never_raises() -> None:
    assert verify_password(None, PASSWORD) == (False, None)  # type: ignore[arg-type]
    assert verify_password(LEGACY["md5_crypt $1$"], None) == (False, None)  # type: ignore[arg-type]
    assert verify_password(LEGACY["md5_crypt $1$"], "\udcff") == (False, None)


# ---------------------------------------------------------------------- credential cache


def test_cache_check_and_remember() -> None:
    cache = CredentialCache()
    assert cache.check("$hash1", "pw") is None
    cache.remember("$hash1", "pw")
    assert cache.check("$hash1", "pw") is True
    # Never a cheap "no": a mismatch is verified for real (see CredentialCache's doc).
    assert cache.check("$hash1", "other") is None
    assert cache.check("$hash1", "") is None
    # A new stored hash (password changed) is a different key: not cached.
    assert cache.check("$hash2", "pw") is None
    assert len(cache) == 1


def test_cache_holds_no_plaintext() -> None:
    cache = CredentialCache()
    cache.remember("$hash", "hunter2")
    assert all(b"hunter2" not in value for value in cache._entries.values())
    # Two processes (caches) never share digests: the key is per instance.
    other = CredentialCache()
    other.remember("$hash", "hunter2")
    assert other._entries["$hash"] != cache._entries["$hash"]


def test_cache_is_bounded_lru() -> None:
    cache = CredentialCache(max_entries=3)
    for n in range(3):
        cache.remember(f"$h{n}", "pw")
    assert cache.check("$h0", "pw") is True  # touch: h1 is now the oldest
    cache.remember("$h3", "pw")
    assert len(cache) == 3
    assert cache.check("$h1", "pw") is None
    assert cache.check("$h0", "pw") is True
    cache.forget("$h0")
    assert cache.check("$h0", "pw") is None
    cache.clear()
    assert len(cache) == 0


def test_cache_ignores_empty() -> None:
    cache = CredentialCache()
    cache.remember("$h", "")
    cache.remember("", "pw")
    assert len(cache) == 0


def test_failed_guesses_remember_pairs_not_passwords() -> None:
    failed = FailedGuesses(max_entries=2)
    assert not failed.seen("user\0joe\0$h", "guess")
    failed.add("user\0joe\0$h", "guess")
    assert failed.seen("user\0joe\0$h", "guess")
    assert not failed.seen("user\0joe\0$h", "other")
    # A changed stored hash (new password) is another context: the entry is stale.
    assert not failed.seen("user\0joe\0$new", "guess")
    assert all(b"guess" not in key for key in failed._entries)
    failed.add("c2", "x")
    failed.add("c3", "y")  # bounded: the oldest goes
    assert len(failed) == 2 and not failed.seen("user\0joe\0$h", "guess")


def test_dummy_hash_costs_what_a_new_hash_costs() -> None:
    dummy = dummy_hash()
    real = hash_password("x")
    params = argon2.extract_parameters(dummy)
    assert params == argon2.extract_parameters(real)
    assert verify_password(dummy, "anything") == (False, None)


# ---------------------------------------------------------------------- app tokens


def test_generate_token_shape() -> None:
    tokens = {generate_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(is_token_shaped(t) for t in tokens)


@pytest.mark.parametrize(
    ("text", "shaped"),
    [
        ("0123456789abcdef0123456789abcdef", True),
        ("0123456789ABCDEF0123456789ABCDEF", False),
        ("0123456789abcdef0123456789abcde", False),
        ("0123456789abcdef0123456789abcdef0", False),
        ("0123456789abcdeg0123456789abcdef", False),
        ("0123456789abcdef0123456789abcdef\n", False),
        ("", False),
        (None, False),
    ],
)
def test_is_token_shaped(text: str, shaped: bool) -> None:
    assert is_token_shaped(text) is shaped


def test_hash_token_is_mailu_compatible() -> None:
    raw = generate_token()
    stored = hash_token(raw)
    assert stored.startswith("$pbkdf2-sha256$1$")
    assert ph.pbkdf2_sha256.verify(raw, stored)  # what Mailu would check on re-import
    assert verify_token(stored, raw) == (True, None)
    assert verify_token(stored, generate_token()) == (False, None)
    # verify_password reads it too (reference: tokens verified like passwords).
    assert verify_password(stored, raw)[0]


def test_legacy_sha256_crypt_token_is_upgraded_to_pbkdf2() -> None:
    raw = generate_token()
    stored = ph.sha256_crypt.using(rounds=1000).hash(raw)
    ok, replacement = verify_token(stored, raw)
    assert ok
    assert replacement is not None and replacement.startswith("$pbkdf2-sha256$1$")
    assert verify_token(replacement, raw) == (True, None)


def test_verify_token_never_raises() -> None:
    assert verify_token("", "x") == (False, None)
    assert verify_token(None, "x") == (False, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("networks", "ip", "allowed"),
    [
        ((), "203.0.113.9", True),
        ((), "garbage", True),
        (("192.0.2.0/24",), "192.0.2.77", True),
        (("192.0.2.0/24",), "192.0.3.1", False),
        (("192.0.2.0/24",), "::ffff:192.0.2.77", True),
        (("192.0.2.0/24", "2001:db8::/32"), "[2001:db8::5]", True),
        (("2001:db8::/32",), "2001:db9::5", False),
        (("192.0.2.5",), "192.0.2.5", True),
        (("192.0.2.0/24",), "garbage", False),
        (("192.0.2.0/24",), "", False),
        (("not a network",), "192.0.2.1", False),
    ],
)
def test_token_allows_ip(networks: tuple[str, ...], ip: str, allowed: bool) -> None:
    token = TokenEntry(1, "joe@example.com", "h", networks)
    assert token_allows_ip(token, ip) is allowed


def test_module_hasher_defaults_are_rfc9106() -> None:
    # RFC 9106 §4, second recommended option: Argon2id, t=3, 64 MiB.
    assert PRODUCTION_HASHER.type is argon2.Type.ID
    assert PRODUCTION_HASHER.time_cost >= 3
    assert PRODUCTION_HASHER.memory_cost >= 65536
