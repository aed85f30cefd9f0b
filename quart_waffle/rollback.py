"""Rollback: revert one revision, or restore every setting as it was at a
revision, each as a new revision (history stays append-only); and the
diff of two JSON values that every history view shows.

The values restored come from the store's kept values (``waffle_kept_values``),
which hold secrets too: a secret is put back without its value ever leaving
the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .actor import checked_actor, checked_reason
from .errors import InvalidValueError
from .kinds import MAX_INT
from .store import PastValue, unavailable_as_error

if TYPE_CHECKING:
    from .extension import QuartWaffle

MAX_DIFF_ENTRIES = 50
"""The most changed paths one diff lists; beyond, the diff says it is cut."""


async def revert(
    waffle: QuartWaffle, revision: int, *, force: bool = False, actor: str = "", reason: str = ""
) -> int:
    """Put each key ``revision`` changed back to its value before it, as one
    new revision; :class:`ConflictError` naming the keys changed after
    ``revision`` unless ``force``; return the new revision (the current one
    when every key already has its old value)."""
    actor, reason = checked_actor(actor), checked_reason(reason)
    store = waffle._connected().store
    with unavailable_as_error():
        changes = await store.kept_changes(_checked_revision(revision, 1))
    if not changes:
        raise InvalidValueError({"revision": f"no change is recorded at revision {revision}"})
    targets = {key: before for key, (before, _after) in changes.items()}
    encoded = _encoded(waffle, targets, f"before revision {revision}")
    recorded = f"revert of revision {revision}" + (f": {reason}" if reason else "")
    return await waffle._write(encoded, None if force else revision, actor, recorded)


async def restore(
    waffle: QuartWaffle,
    revision: int,
    *,
    expected_revision: int | None = None,
    actor: str = "",
    reason: str = "",
) -> int:
    """Put every declared setting back as it was once ``revision`` was
    committed (0: before any change, so every default), as one new revision;
    :class:`ConflictError` when a key to change was changed after
    ``expected_revision``."""
    actor, reason = checked_actor(actor), checked_reason(reason)
    store = waffle._connected().store
    with unavailable_as_error():
        latest = await store.latest_revision()
        if _checked_revision(revision, 0) > latest:
            raise InvalidValueError({"revision": f"must be at most {latest}, the newest revision"})
        changed = [row.key for row in await store.changes_since(revision)]
        targets = await store.values_at(revision, [k for k in changed if k in waffle.declarations])
    if not targets:
        return waffle.revision
    encoded = _encoded(waffle, targets, f"at revision {revision}")
    recorded = f"restore of revision {revision}" + (f": {reason}" if reason else "")
    return await waffle._write(encoded, expected_revision, actor, recorded)


def _checked_revision(revision: object, lowest: int) -> int:
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < lowest:
        raise InvalidValueError({"revision": f"must be an integer of at least {lowest}"})
    if revision > MAX_INT:
        raise InvalidValueError({"revision": f"must be at most {MAX_INT}"})
    return revision


def _encoded(waffle: QuartWaffle, targets: Mapping[str, PastValue], when: str) -> dict[str, Any]:
    """The stored text to write for each target (None: follow the default),
    checked against today's declarations; :class:`InvalidValueError` names
    every key that cannot be put back, and why."""
    errors: dict[str, str] = {}
    encoded: dict[str, str | None] = {}
    for key, past in targets.items():
        setting = waffle.declarations.get(key)
        if setting is None:
            errors[key] = "no longer declared"
            continue
        if not past.kept and setting.secret:
            errors[key] = (
                f"its value {when} was not kept (changed under quart-waffle 0.1): set it by hand"
            )
            continue
        if past.text is None:
            encoded[key] = None
            continue
        try:
            encoded[key] = setting.encode(setting.decode(past.text))
        except InvalidValueError as error:
            errors[key] = f"its value {when} no longer fits: {error.errors[key]}"
    if errors:
        raise InvalidValueError(errors)
    return encoded


def json_diff(old: Any, new: Any) -> list[dict[str, Any]] | None:
    """What changed from ``old`` to ``new`` when both are JSON objects or
    lists, as ``{"op": "add"|"remove"|"replace", "path": <JSON pointer>,
    "old"?, "new"?}`` entries (at most :data:`MAX_DIFF_ENTRIES`, then one
    ``{"op": "more"}``); None for plain values, where old and new say it all.

    Example: ``json_diff({"a": 1}, {"a": 2})`` is
    ``[{"op": "replace", "path": "/a", "old": 1, "new": 2}]``.
    """
    if not (isinstance(old, dict | list) and isinstance(new, dict | list)):
        return None
    entries: list[dict[str, Any]] = []
    _diff(old, new, "", entries)
    if len(entries) > MAX_DIFF_ENTRIES:
        entries = [*entries[:MAX_DIFF_ENTRIES], {"op": "more", "path": ""}]
    return entries


def _diff(old: Any, new: Any, path: str, entries: list[dict[str, Any]]) -> None:
    if len(entries) > MAX_DIFF_ENTRIES:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for name in [*old, *(name for name in new if name not in old)]:
            child = f"{path}/{_pointer(name)}"
            if name not in new:
                entries.append({"op": "remove", "path": child, "old": old[name]})
            elif name not in old:
                entries.append({"op": "add", "path": child, "new": new[name]})
            else:
                _diff(old[name], new[name], child, entries)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (before, after) in enumerate(zip(old, new, strict=True)):
            _diff(before, after, f"{path}/{index}", entries)
    elif old != new or type(old) is not type(new):
        entries.append({"op": "replace", "path": path, "old": old, "new": new})


def _pointer(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
