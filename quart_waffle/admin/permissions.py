"""Who may read or change which keys, once a request is let in.

Three rules, each able only to refuse: a token of role ``read`` changes
nothing (403 ``read_only``); a named token with ``keys`` touches only the
keys its patterns cover; the app's ``authorize_keys`` callback, when given,
is asked with the request, the operation and the keys (``g.waffle_actor``
naming who asks), and answers True (all of them), False (none) or the keys
it allows. A write naming a key
refused is answered 403 ``forbidden_keys`` with every refused key in
``fields``, before anything is stored; lists (settings, history, export)
leave out the keys the caller may not read.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from quart import Request, g, request

from .errors import AdminError

if TYPE_CHECKING:
    from ..extension import QuartWaffle
    from .tokens import Role

Operation = Literal["read", "write", "reset", "revert", "restore", "apply", "schedule"]
"""What a request does to the keys it names: ``write`` (PUT, PATCH, the
page's save), ``reset``, ``revert`` and ``restore`` (the keys they put back),
``apply`` (the keys a promotion changes), ``schedule`` (a scheduled change)."""

KeyAuthorizer = Callable[[Request, Operation, frozenset[str]], Awaitable[bool | Collection[str]]]
"""``authorize_keys(request, operation, keys)``: True (every key), False
(none) or the keys among ``keys`` the request may read or change; see
docs/admin.md, "Who may change what"."""

_SCAN_PAGE = 1000


@dataclass(frozen=True)
class Access:
    """Who a request is: its actor, role, and key patterns (None: every key)."""

    actor: str
    role: Role = "admin"
    keys: tuple[str, ...] | None = None

    def allows(self, key: str) -> bool:
        """Whether the key patterns cover ``key`` (case-sensitive globs)."""
        return self.keys is None or any(fnmatch.fnmatchcase(key, p) for p in self.keys)


def current_access() -> Access:
    """The access :func:`~.auth.authenticate` left for this request."""
    access: Access = g.waffle_access
    return access


def refuse_read_only() -> None:
    """403 ``read_only`` for a token of role ``read``; nothing is stored."""
    access = current_access()
    if access.role == "read":
        raise AdminError(
            403,
            "read_only",
            f"{access.actor} may read the settings but not change them; nothing was stored.",
        )


async def allowed_keys(waffle: QuartWaffle, operation: Operation, keys: Iterable[str]) -> set[str]:
    """The keys among ``keys`` this request may ``operation``."""
    access = current_access()
    wanted = set(keys)
    if operation != "read" and access.role == "read":
        return set()
    allowed = {key for key in wanted if access.allows(key)}
    if waffle.authorize_keys is None or not allowed:
        return allowed
    g.waffle_actor = access.actor  # who is asking, for the callback
    answer = await waffle.authorize_keys(request, operation, frozenset(allowed))
    if answer is True:
        return allowed
    if answer is False:
        return set()
    return allowed & set(answer)


def has_key_rules(waffle: QuartWaffle) -> bool:
    """Whether anything may refuse a key (else every check is skipped)."""
    access = current_access()
    return waffle.authorize_keys is not None or access.keys is not None or access.role == "read"


async def check_keys(waffle: QuartWaffle, operation: Operation, keys: Iterable[str]) -> None:
    """403 ``forbidden_keys`` naming every key of ``keys`` this request may
    not ``operation``; call it before storing anything."""
    if operation != "read":
        refuse_read_only()
    wanted = set(keys)
    if not wanted or not has_key_rules(waffle):
        return
    refused = sorted(wanted - await allowed_keys(waffle, operation, wanted))
    if refused:
        raise AdminError(
            403,
            "forbidden_keys",
            f"{current_access().actor} may not {operation} {', '.join(refused)};"
            " nothing was stored.",
            dict.fromkeys(refused, f"{operation} not allowed"),
        )


async def readable(waffle: QuartWaffle, keys: Iterable[str]) -> set[str]:
    """The keys among ``keys`` this request may read (lists show only those)."""
    wanted = set(keys)
    if not has_key_rules(waffle):
        return wanted
    return await allowed_keys(waffle, "read", wanted)


async def revision_keys(waffle: QuartWaffle, revision: int) -> set[str]:
    """The keys ``revision`` changed (what reverting it puts back)."""
    return await _keys_where(waffle, lambda entry_revision: entry_revision == revision, revision)


async def keys_changed_since(waffle: QuartWaffle, revision: int) -> set[str]:
    """The keys changed after ``revision`` (what restoring it puts back)."""
    return await _keys_where(waffle, lambda entry_revision: entry_revision > revision, None)


async def _keys_where(
    waffle: QuartWaffle, wanted: Callable[[int], bool], revision: int | None
) -> set[str]:
    keys: set[str] = set()
    before: int | None = None
    while True:
        entries = await waffle.history(before_id=before, limit=_SCAN_PAGE, revision=revision)
        keys.update(entry.key for entry in entries if wanted(entry.revision))
        if len(entries) < _SCAN_PAGE or not wanted(entries[-1].revision):
            return keys & set(waffle.declarations)
        before = entries[-1].id


async def check_rollback(
    waffle: QuartWaffle, operation: Literal["revert", "restore"], revision: int
) -> int | None:
    """Check the keys a revert or restore of ``revision`` would put back;
    return the revision they were read at (a restore passes it as its
    expected revision, so that a key changed meanwhile, and so not checked,
    is a conflict rather than restored), None when nothing was checked."""
    refuse_read_only()
    if not has_key_rules(waffle):
        return None
    await waffle.refresh()
    seen = waffle.revision
    if operation == "revert":
        keys = await revision_keys(waffle, revision)
    else:
        keys = await keys_changed_since(waffle, revision)
    await check_keys(waffle, operation, keys)
    return seen


async def check_apply(
    waffle: QuartWaffle, values: dict[str, object], expected: int | None
) -> int | None:
    """Check the keys applying ``values`` would change (a secret always
    counts as changed); return the expected revision to apply with (the
    plan's, when none was given, so that a key that starts to differ
    meanwhile is a conflict rather than unchecked). A plan (dry run) is
    checked as the apply it shows: read-only tokens get 403 for both."""
    from ..promotion import plan

    refuse_read_only()
    if not has_key_rules(waffle):
        return expected
    planned = await plan(waffle, values, blind_secrets=True)
    await check_keys(waffle, "apply", [change.key for change in planned.changes])
    return planned.base_revision if expected is None else expected
