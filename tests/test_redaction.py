"""The one rule for what of an error or URL may be shown."""

from __future__ import annotations

import pytest

from quart_waffle.redaction import describe_error, mask_credentials


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("redis://:pw@host:6379/0", "redis://***@host:6379/0"),
        ("redis://user:p@ss@host/0 failed", "redis://***@host/0 failed"),
        ("postgresql+asyncpg://app:s3cret@db/prod", "postgresql+asyncpg://***@db/prod"),
        ("host=db password='a b' user=x", "host=db password=*** user=x"),
        ("rediss://host:6380/0", "rediss://host:6380/0"),
        # a password with an unencoded '/', '?' or '#': masked up to the last '@'
        ("redis+sentinel://admin:Sup3rS/cretPw@h1:26379/m", "redis+sentinel://***@h1:26379/m"),
        ("redis://:Sup3rS/cretPw@h1:6379/0", "redis://***@h1:6379/0"),
        ("redis+cluster://u:Sup3rS?cretPw@n1:6379", "redis+cluster://***@n1:6379"),
        ("postgresql://u:pw#x@db/prod failed", "postgresql://***@db/prod failed"),
    ],
)
def test_credentials_are_masked(text: str, expected: str) -> None:
    assert mask_credentials(text) == expected


def test_error_summary_is_one_masked_line() -> None:
    error = ConnectionError("cannot reach redis://:hunter2@cache:6379\nSQL: SELECT secret")
    summary = describe_error(error)
    assert summary == "ConnectionError: cannot reach redis://***@cache:6379"
    assert "hunter2" not in summary


def test_error_summary_is_bounded() -> None:
    assert len(describe_error(ValueError("x" * 1000))) < 200
