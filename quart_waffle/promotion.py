"""Promotion between environments: export the settings of one, plan what a
file would change in another, and apply it as one atomic revision or not
at all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .actor import checked_actor, checked_reason
from .errors import ConflictError, InvalidValueError

if TYPE_CHECKING:
    from .extension import QuartWaffle


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """One key a file would change: its value now and in the file, as they
    may be shown (a secret's masked)."""

    key: str
    old: Any
    new: Any

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "old": self.old, "new": self.new}


@dataclass(frozen=True, slots=True)
class Plan:
    """What applying a file does to the store at ``base_revision``: the keys
    it changes, and the file's keys that already have its value."""

    base_revision: int
    changes: tuple[PlannedChange, ...]
    unchanged: tuple[str, ...]
    applied_revision: int | None = None  # None: a dry run, or nothing to change

    def as_dict(self) -> dict[str, Any]:
        return {
            "base_revision": self.base_revision,
            "applied_revision": self.applied_revision,
            "changes": [change.as_dict() for change in self.changes],
            "unchanged": list(self.unchanged),
        }


def export(waffle: QuartWaffle, *, include_secrets: bool = False) -> dict[str, Any]:
    """Every setting this worker serves, as ``{"revision": R, "settings": {...}}``;
    secret settings are left out unless ``include_secrets``.

    Example: ``json.dump(export(waffle), file)``.
    """
    snapshot = waffle.snapshot
    return {
        "revision": snapshot.revision,
        "settings": {
            key: waffle.declarations[key].to_json(value)
            for key, value in snapshot.values.items()
            if include_secrets or not waffle.declarations[key].secret
        },
    }


def read_document(text: str) -> dict[str, Any]:
    """The settings of an exported file (or of a plain ``{key: value}``
    object); :class:`InvalidValueError` naming ``file`` when it is neither."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise InvalidValueError({"file": f"not valid JSON: {error}"}) from None
    except RecursionError:
        raise InvalidValueError({"file": "nested too deeply"}) from None
    return settings_of(document)


def settings_of(document: Any, field: str = "file") -> dict[str, Any]:
    """``document["settings"]`` of an export, or ``document`` itself: a
    non-empty object; :class:`InvalidValueError` naming ``field`` otherwise."""
    values = document.get("settings", document) if isinstance(document, dict) else None
    if not isinstance(values, dict) or not values:
        raise InvalidValueError({field: "expected a non-empty JSON object of settings"})
    return values


async def plan(waffle: QuartWaffle, values: dict[str, Any], *, blind_secrets: bool = False) -> Plan:
    """What applying ``values`` would change in the store now: every value
    is checked as a write checks it (:class:`InvalidValueError` names each
    bad key) and compared with the store's newest revision. With
    ``blind_secrets`` (the admin's plans), a secret is always among the
    changes, whatever its value: "unchanged" would confirm a guessed secret."""
    encoded = waffle._encode(values)
    await waffle.refresh()
    snapshot = waffle.snapshot
    changes: list[PlannedChange] = []
    unchanged: list[str] = []
    for key, text in encoded.items():
        setting = waffle.declarations[key]
        new = setting.decode(text) if text is not None else setting.default
        same = _canonical(setting.to_json(new)) == _canonical(setting.to_json(snapshot.values[key]))
        if same and not (blind_secrets and setting.secret):
            unchanged.append(key)
        else:
            changes.append(
                PlannedChange(key, setting.display(snapshot.values[key]), setting.display(new))
            )
    return Plan(snapshot.revision, tuple(changes), tuple(unchanged))


def _canonical(value: Any) -> str:
    """One text per JSON value: objects compare whatever their keys' order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


async def apply(
    waffle: QuartWaffle,
    values: dict[str, Any],
    *,
    dry_run: bool = False,
    expected_revision: int | None = None,
    actor: str = "",
    reason: str = "",
    blind_secrets: bool = False,
) -> Plan:
    """Plan ``values``, then (unless ``dry_run``) write the keys that change
    as one revision: :class:`ConflictError` when one of them changed after
    ``expected_revision``, and nothing is stored. The plan returned names
    the new revision in ``applied_revision``. ``blind_secrets``: see
    :func:`plan` (a secret in ``values`` is then written whatever its value).

    Example::

        plan = await apply(waffle, read_document(text), expected_revision=41, actor="deploy")
    """
    actor, reason = checked_actor(actor), checked_reason(reason)
    planned = await plan(waffle, values, blind_secrets=blind_secrets)
    if expected_revision is not None and dry_run:
        stale = {
            change.key: waffle.snapshot.revisions[change.key]
            for change in planned.changes
            if waffle.snapshot.revisions[change.key] > expected_revision
        }
        if stale:
            current = {key: waffle.declarations[key].display(waffle.get(key)) for key in stale}
            raise ConflictError(expected_revision, current, stale)
    if dry_run or not planned.changes:
        return planned
    changed = {change.key: values[change.key] for change in planned.changes}
    revision = await waffle.update(
        changed, expected_revision=expected_revision, actor=actor, reason=reason
    )
    return Plan(planned.base_revision, planned.changes, planned.unchanged, revision)
