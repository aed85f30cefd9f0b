"""The one place that decides what of an error or a URL may be shown: health,
logs, CLI messages and HTTP bodies all go through these two functions."""

from __future__ import annotations

import re

# Up to the last '@' before white space: a password with an unencoded '/', '?'
# or '#' does not end the user part for the reader who wants it masked.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)\S*@")
_PASSWORD_PAIR = re.compile(
    r"(?i)\b([a-z_]*password|passwd|pwd)(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|\S+)"
)
MAX_SUMMARY = 160


def mask_credentials(text: str) -> str:
    """``text`` with every URL's ``user:password@`` and every ``password=...``
    (``sentinel_password=...`` too) masked.

    The user part goes too (``redis://:pw@`` and passwords that contain ``@``
    are masked whole). Example: ``mask_credentials("redis://:s3cret@host/0")``
    is ``"redis://***@host/0"``.
    """
    return _PASSWORD_PAIR.sub(r"\1\2***", _URL_USERINFO.sub(r"\1***@", text))


def describe_error(error: BaseException) -> str:
    """``"<type>: <first line>"``, short and with credentials masked.

    Driver messages can carry SQL and its parameters on later lines, and a
    connection URL anywhere, so only the first line is kept.
    """
    lines = str(error).strip().splitlines()
    line = mask_credentials(lines[0]) if lines else ""
    if len(line) > MAX_SUMMARY:
        line = f"{line[: MAX_SUMMARY - 3]}..."
    return f"{type(error).__name__}: {line}" if line else type(error).__name__
