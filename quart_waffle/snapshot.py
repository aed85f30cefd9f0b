"""The immutable view of every setting one worker serves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Values at one revision. A worker swaps its whole snapshot at once, so a
    request never sees half of an update.

    ``revision`` is -1 until the worker has loaded from the store;
    ``revisions`` maps each key to the revision that last changed it;
    ``defaults`` holds the keys serving their declared default (never set, or
    reset); ``rejected`` maps each key whose stored value no longer fits its
    declaration to the reason (such a key serves its default too).
    """

    revision: int
    values: MappingProxyType[str, Any]
    revisions: MappingProxyType[str, int]
    defaults: frozenset[str] = frozenset()
    rejected: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(
        cls,
        revision: int,
        values: dict[str, Any],
        revisions: dict[str, int],
        defaults: Iterable[str] = (),
        rejected: dict[str, str] | None = None,
    ) -> Snapshot:
        """A snapshot owning read-only views of ``values`` and ``revisions``."""
        return cls(
            revision,
            MappingProxyType(values),
            MappingProxyType(revisions),
            frozenset(defaults),
            MappingProxyType(rejected or {}),
        )

    def is_default(self, key: str) -> bool:
        """Whether ``key`` serves its declared default rather than a stored value."""
        return key in self.defaults

    def merged(
        self,
        revision: int,
        values: Mapping[str, Any],
        revisions: Mapping[str, int],
        defaults: Iterable[str] = (),
        rejected: Mapping[str, str] | None = None,
    ) -> Snapshot:
        """A new snapshot with ``values`` laid over this one: of those keys,
        the ones in ``defaults`` serve their default, the ones in ``rejected``
        had a stored value that no longer fits."""
        # the proxies' copy() is a plain dict copy, far faster than unpacking a proxy
        merged_values, merged_revisions = self.values.copy(), self.revisions.copy()
        merged_values.update(values)
        merged_revisions.update(revisions)
        merged_rejected = {key: why for key, why in self.rejected.items() if key not in values}
        merged_rejected.update(rejected or {})
        return Snapshot.of(
            max(self.revision, revision),
            merged_values,
            merged_revisions,
            (self.defaults - values.keys()) | set(defaults),
            merged_rejected,
        )
