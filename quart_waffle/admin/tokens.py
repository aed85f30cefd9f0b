"""Named admin tokens (``WAFFLE_ADMIN_TOKENS``): one token per person or
robot, each recorded in history under its own name, with a role (``admin``
may change settings, ``read`` may only look) and optionally the keys it may
touch (glob patterns).

The option takes a mapping of name to token, or of name to
``{"token": ..., "role": ..., "keys": [...]}``; in the environment, the same
mapping as JSON. Every token obeys the rules of ``WAFFLE_ADMIN_TOKEN``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from ..errors import ConfigurationError

Role = Literal["admin", "read"]
ROLES: tuple[Role, ...] = get_args(Role)
TOKEN_ACTOR = "token"
"""The actor of the unnamed ``WAFFLE_ADMIN_TOKEN``; a named token's is ``token:<name>``."""

_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_MEMBERS = ("token", "role", "keys")


@dataclass(frozen=True)
class NamedToken:
    """One admin token: its ``name`` (empty for ``WAFFLE_ADMIN_TOKEN``), its
    ``role``, and the glob patterns of the keys it may touch (None: every key)."""

    name: str
    token: str = field(repr=False)
    role: Role = "admin"
    keys: tuple[str, ...] | None = None

    @property
    def actor(self) -> str:
        """Who history says made a change with this token."""
        return f"{TOKEN_ACTOR}:{self.name}" if self.name else TOKEN_ACTOR


def parse_admin_tokens(option: str, value: Any) -> tuple[NamedToken, ...]:
    """``value`` (a mapping, or its JSON text from the environment) as named
    tokens; :class:`ConfigurationError` naming ``option`` and the entry, and
    never printing a token."""
    from .auth import check_token

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigurationError(
                f'{option} must be a JSON object like {{"alice": "<token>"}}; it is not JSON'
            ) from None
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"{option} must be a mapping of name to token, got {type(value).__name__}"
        )
    tokens: list[NamedToken] = []
    for name, entry in value.items():
        where = f"{option}[{name!r}]"
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            raise ConfigurationError(
                f"{option}: the name {str(name)[:70]!r} must be 1 to 64 ASCII letters,"
                " digits or _ . @ -"
            )
        if isinstance(entry, str):
            entry = {"token": entry}
        if not isinstance(entry, Mapping):
            raise ConfigurationError(f"{where} must be a token or an object with a token")
        unknown = sorted(str(member) for member in entry if member not in _MEMBERS)
        if unknown:
            raise ConfigurationError(
                f"{where} has unknown members {', '.join(unknown)} (use {', '.join(_MEMBERS)})"
            )
        token = entry.get("token")
        if not isinstance(token, str) or not token:
            raise ConfigurationError(f"{where} needs a token (a string)")
        check_token(token, where)
        role = entry.get("role", "admin")
        if role not in ROLES:
            raise ConfigurationError(f"{where}: role must be one of {', '.join(ROLES)}")
        tokens.append(NamedToken(name, token, role, _patterns(where, entry.get("keys"))))
    if len({named.token for named in tokens}) < len(tokens):
        raise ConfigurationError(
            f"{option}: two names share one token, so history could not tell them apart"
        )
    return tuple(tokens)


def _patterns(where: str, keys: Any) -> tuple[str, ...] | None:
    if keys is None:
        return None
    if isinstance(keys, str) or not isinstance(keys, Sequence):
        raise ConfigurationError(
            f'{where}: keys must be a list of glob patterns, like ["FEATURE_*"]'
        )
    if not all(isinstance(pattern, str) and pattern for pattern in keys):
        raise ConfigurationError(f"{where}: each of keys must be a non-empty string")
    return tuple(keys)
