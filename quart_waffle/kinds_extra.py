"""Kinds and checks from optional libraries: a pydantic model or type as a
setting's type (the ``pydantic`` extra), and JSON values checked against a
JSON Schema (the ``jsonschema`` extra). Neither library is imported unless a
declaration asks for it."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

from .kinds import Kind, load_json

SchemaCheck = Callable[[Any], "str | None"]
"""Why a JSON value does not match a schema, or None when it does."""

_SCHEMA_EXTRA = "a JSON Schema needs the jsonschema extra: pip install 'quart-waffle[jsonschema]'"


def schema_check(schema: Mapping[str, Any]) -> SchemaCheck:
    """A check of JSON values against ``schema`` (any draft jsonschema knows,
    formats checked where it can); raise ``ValueError`` when the jsonschema
    extra is missing or the schema itself is invalid."""
    try:
        jsonschema: Any = importlib.import_module("jsonschema")
    except ImportError:
        raise ValueError(_SCHEMA_EXTRA) from None
    validator_class = jsonschema.validators.validator_for(schema)
    try:
        validator_class.check_schema(schema)
    except jsonschema.exceptions.SchemaError as error:
        raise ValueError(f"invalid JSON Schema: {error.message}") from None
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)

    def problem(value: Any) -> str | None:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is None:
            return None
        path = "/".join(str(part) for part in error.absolute_path)
        return (
            f"does not match its JSON Schema: {'at ' + path + ': ' if path else ''}{error.message}"
        )

    return problem


def pydantic_kind(type_: Any) -> Kind | None:
    """The kind of values pydantic validates as ``type_`` (a model, a
    dataclass, ``list[int]``, ``Annotated[...]``), or None when pydantic is
    not installed or cannot validate ``type_``."""
    try:
        pydantic: Any = importlib.import_module("pydantic")
    except ImportError:
        return None
    try:
        adapter = pydantic.TypeAdapter(type_)
        schema = adapter.json_schema()
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError):
        return None

    def check(value: Any) -> Any:
        try:
            return adapter.validate_python(value)
        except pydantic.ValidationError as error:
            first = error.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"{where + ': ' if where else ''}{first['msg']}") from None

    def to_json(value: Any) -> Any:
        return adapter.dump_python(check(value), mode="json")

    def parse_text(text: str) -> Any:
        return check(load_json(text))

    return Kind(
        type_.__name__ if isinstance(type_, type) else repr(type_),
        None,
        check,
        parse_text,
        lambda value: json.dumps(to_json(value), indent=2, ensure_ascii=False),
        schema,
        "textarea",
        to_json=to_json,
        secret_reason="must be a valid value of its declared type",
    )


def pydantic_kind_of_value(default: Any) -> Kind | None:
    """The kind of a pydantic model instance given as a default, else None."""
    pydantic = sys.modules.get("pydantic")  # a model instance means pydantic is imported
    if pydantic is None or not isinstance(default, pydantic.BaseModel):
        return None
    return pydantic_kind(type(default))
