"""Process titles (``ps``, ``top``) naming the role, the app and the generation.

They need the optional ``setproctitle`` package (the ``proctitle`` extra): without it, titles
are left as they are.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def _setter() -> Callable[[str], None] | None:
    try:
        module = importlib.import_module("setproctitle")
    except ImportError:
        return None
    setter: Callable[[str], None] = module.setproctitle
    return setter


_set = _setter()


def set_title(role: str, app: str, generation: int | str) -> None:
    """Title this process ``quart-waffle: <role> <app> gen <generation>``, if possible."""
    if _set is not None:
        _set(f"quart-waffle: {role} {app} gen {generation}")
