"""The tokens file: hashes only, roles checked, expiry and revocation honoured without restart."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.grpc.tokens import (
    TOKEN_PREFIX,
    Authenticator,
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

    path.write_text("[[token]\nthis is not toml")
    assert auth.principal(token) is not None


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
