"""The immutable view of every setting one worker serves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Values at one revision. A worker swaps its whole snapshot at once, so a
    request never sees half of an update.

    ``revision`` is -1 until the worker has loaded from the store;
    ``revisions`` maps each key to the revision that last changed it.
    """

    revision: int
    values: MappingProxyType[str, Any]
    revisions: MappingProxyType[str, int]

    @classmethod
    def of(cls, revision: int, values: dict[str, Any], revisions: dict[str, int]) -> Snapshot:
        """A snapshot owning read-only views of ``values`` and ``revisions``."""
        return cls(revision, MappingProxyType(values), MappingProxyType(revisions))

    def merged(
        self, revision: int, values: Mapping[str, Any], revisions: Mapping[str, int]
    ) -> Snapshot:
        """A new snapshot with ``values`` laid over this one."""
        # the proxies' copy() is a plain dict copy, far faster than unpacking a proxy
        merged_values, merged_revisions = self.values.copy(), self.revisions.copy()
        merged_values.update(values)
        merged_revisions.update(revisions)
        return Snapshot.of(max(self.revision, revision), merged_values, merged_revisions)
