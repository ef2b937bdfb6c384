"""The tokens file: hashes only, roles checked, expiry and revocation honoured without restart."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog.testing

from adapters.grpc import tokens as tokens_module
from adapters.grpc.tokens import (
    TOKEN_PREFIX,
    Authenticator,
    TokenEntry,
    TokensFileError,
    add_token,
    load_tokens,
    token_hash,
)


def test_a_new_token_is_returned_once_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    token = add_token(path, "crm-sync", ["writer", "reader"])

    assert token.startswith(TOKEN_PREFIX)
    assert len(token) > 40
    text = path.read_text()
    assert token not in text
    assert token_hash(token) in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    [entry] = load_tokens(path)
    assert entry.principal.name == "crm-sync"
    assert entry.principal.roles == {"writer", "reader"}


def test_each_token_names_its_own_principal(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    writer = add_token(path, "crm-sync", ["writer"])
    auditor = add_token(path, "auditor-1", ["auditor"])
    auth = Authenticator(path)

    assert (p := auth.principal(writer)) is not None
    assert p.name == "crm-sync"
    assert (p := auth.principal(auditor)) is not None
    assert p.roles == {"auditor"}
    assert auth.principal("acc_not-a-token") is None
    assert auth.principal("") is None


def test_an_expired_token_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    soon = datetime.now(UTC) + timedelta(hours=1)
    token = add_token(path, "temp", ["reader"], expires_at=soon)
    auth = Authenticator(path)

    assert auth.principal(token, now=soon - timedelta(seconds=1)) is not None
    assert auth.principal(token, now=soon) is None


def test_revoking_or_adding_a_token_takes_effect_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    token = add_token(path, "crm-sync", ["writer"])
    auth = Authenticator(path)
    assert auth.principal(token) is not None

    path.write_text(path.read_text() + "revoked = true\n")
    assert auth.principal(token) is None

    later = add_token(path, "late-comer", ["reader"])
    assert (p := auth.principal(later)) is not None
    assert p.name == "late-comer"


def test_a_broken_rewrite_keeps_the_last_good_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    token = add_token(path, "crm-sync", ["writer"])
    auth = Authenticator(path)

    with structlog.testing.capture_logs() as logs:
        path.write_text("[[token]\nthis is not toml")
        assert auth.principal(token) is not None
        assert auth.principal(token) is not None

    warnings = [e for e in logs if e["event"] == "tokens_file_unusable_keeping_last_good"]
    assert len(warnings) == 1  # said once, not on every call
    assert token not in str(warnings)


def test_a_hash_listed_twice_is_refused_if_any_copy_is_revoked_or_names_another_principal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens.toml"
    token = add_token(path, "crm-sync", ["writer"])
    first = path.read_text()
    auth = Authenticator(path)

    path.write_text(first + "revoked = true\n" + first)  # the revoked copy comes first
    assert auth.principal(token) is None

    path.write_text(first + first.replace('"crm-sync"', '"someone-else"'))
    assert auth.principal(token) is None

    path.write_text(first + first)  # the same entry twice is still that one principal
    assert (p := auth.principal(token)) is not None
    assert p.name == "crm-sync"


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (
            '[[token]]\nprincipal = "x"\nroles = ["root"]\nsha256 = "' + "0" * 64 + '"',
            "unknown roles",
        ),
        ('[[token]]\nprincipal = "x"\nroles = []\nsha256 = "' + "0" * 64 + '"', "roles"),
        ('[[token]]\nprincipal = ""\nroles = ["reader"]\nsha256 = "' + "0" * 64 + '"', "principal"),
        ('[[token]]\nprincipal = "x"\nroles = ["reader"]\nsha256 = "abc"', "sha256"),
        ('[[token]]\nprincipal = "x"\nroles = ["reader"]\nsha256 = "' + "z" * 64 + '"', "sha256"),
        ('[[token]]\nprincipal = "x"\nroles = ["reader"]\ntoken = "plain"', "sha256"),
        ("token = 3", "array of tables"),
        ("[[token]\n", "not valid TOML"),
    ],
)
def test_an_invalid_file_is_refused_with_the_reason(
    tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(content)
    with pytest.raises(TokensFileError, match=complaint):
        load_tokens(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TokensFileError, match="does not exist"):
        load_tokens(tmp_path / "absent.toml")


def test_principals_cannot_inject_toml(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    add_token(path, 'evil", roles = ["admin"], x = "', ["reader"])
    [entry] = load_tokens(path)
    assert entry.principal.name == 'evil", roles = ["admin"], x = "'
    assert entry.principal.roles == {"reader"}
    for name in ('evil"\nroles = ["admin"]', "bad\x00name"):
        with pytest.raises(TokensFileError, match="control characters"):
            add_token(path, name, ["reader"])


# ------------------------------------------------------------- constant time


def _recording_compare_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[bytes, bytes]]:
    """Every call the authenticator makes to ``hmac.compare_digest``, with its arguments."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((bytes(a), bytes(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    return calls


@pytest.mark.parametrize("which", ["first", "middle", "last", "absent"])
@pytest.mark.parametrize("presented_length", [1, 20, 47, 500])
def test_every_entry_is_compared_in_constant_time_over_fixed_length_digests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str, presented_length: int
) -> None:
    path = tmp_path / "tokens.toml"
    issued = [add_token(path, f"p{n}", ["reader"]) for n in range(5)]
    index = {"first": 0, "middle": 2, "last": 4}.get(which)
    # A presented token of any length: an issued one lengthened, or a guess; never compared raw.
    token = (issued[index] if index is not None else TOKEN_PREFIX) + "x" * presented_length
    if index is not None:
        path.write_text(path.read_text().replace(token_hash(issued[index]), token_hash(token)))
    stored = [entry.sha256 for entry in load_tokens(path)]
    auth = Authenticator(path)
    calls = _recording_compare_digest(monkeypatch)

    found = auth.principal(token)

    assert (found is not None) == (index is not None)
    if index is not None:
        assert found is not None
        assert found.name == f"p{index}"
    presented = hashlib.sha256(token.encode()).digest()
    assert len(calls) == len(stored), "no early exit: every entry is compared, match or not"
    assert sorted(a for a, _ in calls) == sorted(stored), "each stored hash exactly once"
    assert all(b == presented for _, b in calls), "only the presented token's digest"
    assert all(len(a) == len(b) == 32 for a, b in calls), "fixed-length digests only"
    assert token.encode() not in {b for _, b in calls}


def test_revoked_and_expired_entries_are_compared_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokens.toml"
    expired = add_token(path, "old", ["reader"], expires_at=datetime.now(UTC) - timedelta(1))
    revoked = add_token(path, "gone", ["reader"])
    path.write_text(path.read_text() + "revoked = true\n")
    live = add_token(path, "live", ["reader"])
    auth = Authenticator(path)
    calls = _recording_compare_digest(monkeypatch)

    for token in (expired, revoked, live, "acc_guess"):
        calls.clear()
        auth.principal(token)
        assert len(calls) == 3, token[:6]


def test_no_token_lookup_bypasses_the_comparison(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With comparison forced to fail, even a valid token finds no one: no dict or == lookup."""
    path = tmp_path / "tokens.toml"
    token = add_token(path, "crm-sync", ["writer"])
    auth = Authenticator(path)
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: False)
    assert auth.principal(token) is None


def test_an_in_place_revocation_within_one_timestamp_tick_is_not_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file rewritten to the same size within the file system's timestamp granularity.

    Coarse timestamps (a jiffy on ext4, a second or two elsewhere) leave (mtime, size)
    unchanged by a quick same-size edit; the revocation must still take effect.
    """
    path = tmp_path / "tokens.toml"
    token = add_token(path, "crm-sync", ["writer"])
    path.write_text(path.read_text() + "revoked = false\n")
    frozen = path.stat()
    real_stat = Path.stat

    def coarse_stat(self: Path, **kwargs: bool) -> os.stat_result:
        result = real_stat(self, **kwargs)
        if self != path:
            return result
        fields = list(result)
        fields[stat.ST_MTIME] = int(frozen.st_mtime)
        fields[stat.ST_CTIME] = int(frozen.st_ctime)
        fields[stat.ST_INO] = frozen.st_ino
        extra = {
            "st_mtime_ns": frozen.st_mtime_ns,
            "st_ctime_ns": frozen.st_ctime_ns,
        }
        return os.stat_result(fields, extra)

    monkeypatch.setattr(Path, "stat", coarse_stat)
    auth = Authenticator(path)
    assert auth.principal(token) is not None

    text = path.read_text().replace("revoked = false", "revoked = true ")
    assert len(text) == frozen.st_size
    path.write_text(text)
    assert path.stat().st_mtime_ns == frozen.st_mtime_ns, "the edit is invisible to (mtime, size)"
    assert auth.principal(token) is None


def test_a_settled_file_is_not_parsed_again_on_every_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokens.toml"
    token = add_token(path, "crm-sync", ["writer"])
    old = path.stat().st_mtime_ns - 10 * 1_000_000_000
    os.utime(path, ns=(old, old))
    parsed: list[Path] = []
    real_load = tokens_module.load_tokens

    def counting_load(where: Path) -> list[TokenEntry]:
        parsed.append(where)
        return real_load(where)

    monkeypatch.setattr(tokens_module, "load_tokens", counting_load)
    auth = Authenticator(path)
    for _ in range(5):
        assert auth.principal(token) is not None
    assert len(parsed) == 1

    path.write_text(path.read_text() + "revoked = true\n")
    assert auth.principal(token) is None
    assert len(parsed) == 2
