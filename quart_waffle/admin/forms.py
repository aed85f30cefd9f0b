"""The page's form logic, free of requests and templates: the text each
input shows, what a posted form carried, and what the person changed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from werkzeug.datastructures import MultiDict

from ..errors import InvalidValueError
from ..settings import SECRET_MASK, Setting
from ..snapshot import Snapshot
from .inputs import refuse_mask
from .page_filter import group_of

Declarations = Mapping[str, Setting[Any]]


@dataclass
class Field:
    """What the template needs to draw one setting's input."""

    setting: Setting[Any]
    widget: str
    text: str
    original: str
    shown: str
    revision: int
    error: str | None = None
    options: list[tuple[str, str]] = field(default_factory=list)
    is_default: bool = False
    default_shown: str = ""

    @property
    def step(self) -> str:
        """A number input's ``step``: whole numbers for an integer schema."""
        return "1" if self.setting.json_schema().get("type") == "integer" else "any"

    @property
    def input_type(self) -> str:
        """A one-line input's ``type``: ``date`` and ``url`` as the kind says;
        a datetime is text, since ``datetime-local`` carries no UTC offset."""
        return self.widget if self.widget in ("date", "url") else "text"

    @property
    def placeholder(self) -> str:
        """An example of the text a datetime or duration input reads."""
        return _PLACEHOLDERS.get(self.setting.kind, "")


_PLACEHOLDERS = {"datetime": "2026-11-25T18:00:00+00:00", "duration": "PT15M (or seconds)"}


def grouped_fields(
    declarations: Declarations,
    snapshot: Snapshot,
    edited: Mapping[str, str] | None = None,
    originals: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
) -> dict[str, list[Field]]:
    """Every setting's input, grouped: the ``edited`` text where there is one,
    else the ``originals`` text the form first showed, else the current value."""
    groups: dict[str, list[Field]] = {}
    for key, setting in declarations.items():
        value = snapshot.values[key]
        original = "" if setting.secret else setting.format_text(value)
        if originals is not None and not setting.secret:
            original = originals.get(key, original)
        text = original
        if edited is not None and key in edited and not setting.secret:
            text = edited[key]
        shown = (
            SECRET_MASK
            if setting.secret
            else json.dumps(setting.to_json(value), ensure_ascii=False)
        )
        choices = () if setting.secret else setting.choices or ()
        options = [(setting.format_text(choice),) * 2 for choice in choices]
        groups.setdefault(group_of(setting), []).append(
            Field(
                setting,
                setting.widget,
                text,
                original,
                shown,
                snapshot.revisions.get(key, 0),
                (errors or {}).get(key),
                options,
                is_default=snapshot.is_default(key),
                default_shown=""
                if setting.secret
                else json.dumps(setting.to_json(setting.default)),
            )
        )
    return groups


def submitted(
    declarations: Declarations, form: MultiDict[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The text of every setting the form carried (checkboxes as true/false),
    and the text each input first showed (``original-KEY``)."""
    texts: dict[str, str] = {}
    originals: dict[str, str] = {}
    for key, setting in declarations.items():
        name = f"value-{key}"
        if setting.widget == "checkbox":
            if f"present-{key}" in form:
                texts[key] = "true" if form.get(name) == "true" else "false"
        elif name in form:
            texts[key] = form.get(name, "")
        if f"original-{key}" in form and not setting.secret:
            originals[key] = form.get(f"original-{key}", "")
    return texts, originals


def _same_value(setting: Setting[Any], text: str, original: str) -> bool:
    if text == original:
        return True
    try:
        return bool(setting.parse_text(text) == setting.parse_text(original))
    except InvalidValueError:
        return False


def edited_texts(
    declarations: Declarations,
    snapshot: Snapshot,
    texts: Mapping[str, str],
    originals: Mapping[str, str],
) -> dict[str, str]:
    """The texts the person changed: those that differ from what the form
    showed, not from this worker's current value, so that another admin's
    change to a field left alone is not written back. A form without
    originals is compared with the current values."""
    edited: dict[str, str] = {}
    for key, text in texts.items():
        setting = declarations[key]
        if setting.secret:
            if text != "":  # empty means unchanged
                edited[key] = text
            continue
        original = originals.get(key)
        if original is None:
            original = setting.format_text(snapshot.values[key])
        if not _same_value(setting, text, original):
            edited[key] = text
    return edited


def parsed_changes(
    declarations: Declarations, snapshot: Snapshot, edited: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The edited texts parsed, less those equal to the current values (but
    a secret's, which the store writes all the same: see
    ``SettingsStore.write``), and per-key errors."""
    changes: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, text in edited.items():
        setting = declarations[key]
        try:
            value = setting.parse_text(text)
            refuse_mask(setting, value)
        except InvalidValueError as error:
            errors.update(error.errors)
            continue
        if setting.secret or value != snapshot.values[key]:
            changes[key] = value
    return changes, errors
