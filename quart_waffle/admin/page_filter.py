"""The settings page's search and filters, decided on the server so that they
work without JavaScript (a GET query string), and the group a setting is
listed under. ``filter.js`` applies the same rules in the browser as you type."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ..settings import Setting
from ..snapshot import Snapshot

DEFAULT_GROUP = "Settings"
MAX_QUERY_LENGTH = 200


def group_of(setting: Setting[Any]) -> str:
    """The heading a setting is listed under: its declared ``group``, else its
    key's prefix before the first ``_`` (``CACHE_TTL`` under ``CACHE``), else
    ``Settings``."""
    if setting.group:
        return setting.group
    prefix, underscore, _ = setting.key.partition("_")
    return prefix if underscore and prefix else DEFAULT_GROUP


def search_text(setting: Setting[Any]) -> str:
    """What a search matches against: key, description and group, lower case."""
    return f"{setting.key} {setting.description} {group_of(setting)}".lower()


@dataclass(frozen=True)
class PageFilter:
    """The page's query string: ``q`` (words that must all appear in the key,
    description or group), ``group`` (one group), ``changed=1`` (only settings
    changed from their default), ``restart=1`` (only settings read at start-up)."""

    text: str = ""
    group: str = ""
    changed: bool = False
    restart: bool = False

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> PageFilter:
        return cls(
            text=args.get("q", "").strip()[:MAX_QUERY_LENGTH],
            group=args.get("group", "")[:MAX_QUERY_LENGTH],
            changed=args.get("changed") == "1",
            restart=args.get("restart") == "1",
        )

    @property
    def active(self) -> bool:
        return bool(self.text or self.group or self.changed or self.restart)

    def query(self) -> str:
        """``&q=...&group=...`` for a redirect back to this view ("" when unfiltered)."""
        members = {"q": self.text, "group": self.group}
        members |= {"changed": "1" if self.changed else "", "restart": "1" if self.restart else ""}
        return "".join(f"&{urlencode({name: value})}" for name, value in members.items() if value)

    def matches(self, setting: Setting[Any], snapshot: Snapshot, pending: Collection[str]) -> bool:
        if self.group and group_of(setting) != self.group:
            return False
        if self.changed and snapshot.is_default(setting.key):
            return False
        if self.restart and not (setting.restart or setting.key in pending):
            return False
        haystack = search_text(setting)
        return all(word in haystack for word in self.text.lower().split())

    def apply(
        self,
        declarations: Mapping[str, Setting[Any]],
        snapshot: Snapshot,
        pending: Collection[str] = (),
    ) -> dict[str, Setting[Any]]:
        """The declarations this filter shows, in declaration order."""
        return {
            key: setting
            for key, setting in declarations.items()
            if self.matches(setting, snapshot, pending)
        }


def group_names(declarations: Mapping[str, Setting[Any]]) -> list[str]:
    """Every group, in the order the page lists them (first appearance)."""
    return list(dict.fromkeys(group_of(setting) for setting in declarations.values()))
