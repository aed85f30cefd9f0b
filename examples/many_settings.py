"""An app declaring 1,000 settings (WAFFLE_SCALE_SETTINGS to change the number),
for the admin page at scale: its browser test, its benchmark and its
screenshot (benchmarks/admin_page.py). Half the groups are declared with
``group``; the other half are grouped by key prefix (``CACHE_...``).

Configured from the environment as examples/app.py is (WAFFLE_DATABASE_URL,
WAFFLE_ADMIN_TOKEN, QUART_SECRET_KEY, ...).
"""

from __future__ import annotations

import os
from typing import Any

from quart import Quart

from quart_waffle import QuartWaffle

DECLARED_GROUPS = (
    "Billing",
    "Search",
    "Email",
    "Checkout",
    "Notifications",
    "Uploads",
    "Reports",
    "Accounts",
    "Feeds",
    "Images",
)
PREFIX_GROUPS = ("CACHE", "HTTP", "DB", "QUEUE", "AUTH", "LOG", "FEATURE", "RATE", "SMTP", "CDN")
SHAPES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("TIMEOUT", "Seconds before {area} gives up", {"default": 30, "min": 1, "max": 600}),
    ("ENABLED", "Turn {area} on", {"default": True}),
    ("LABEL", "Text {area} shows", {"default": "standard"}),
    ("MODE", "How {area} runs", {"default": "auto", "choices": ["auto", "manual", "off"]}),
    ("RATIO", "Share of traffic {area} takes", {"default": 0.5, "min": 0.0, "max": 1.0}),
    ("POOL_SIZE", "Connections {area} keeps", {"default": 10, "min": 1, "restart": True}),
    ("RETRIES", "Attempts {area} makes", {"default": 3, "min": 0, "max": 20}),
    ("BATCH", "Items {area} handles at once", {"default": 100, "min": 1}),
)


def declarations(count: int) -> dict[str, dict[str, Any]]:
    """``count`` settings spread over 20 groups, in group order."""
    groups = [(name, name.upper()) for name in DECLARED_GROUPS]
    groups += [("", prefix) for prefix in PREFIX_GROUPS]
    per_group = -(-count // len(groups))
    confs: dict[str, dict[str, Any]] = {}
    for group, prefix in groups:
        for index in range(per_group):
            if len(confs) == count:
                return confs
            name, description, conf = SHAPES[index % len(SHAPES)]
            area = f"{prefix.lower()} worker {index // len(SHAPES) + 1}"
            key = f"{prefix}_{name}_{index // len(SHAPES) + 1}"
            confs[key] = {**conf, "desc": description.format(area=area)}
            if group:
                confs[key]["group"] = group
    return confs


app = Quart(__name__, instance_path=os.environ.get("WAFFLE_INSTANCE_PATH") or None)
app.config.from_prefixed_env()  # QUART_SECRET_KEY signs the admin page session
app.config["WAFFLE_CONFS"] = declarations(int(os.environ.get("WAFFLE_SCALE_SETTINGS", "1000")))
waffle = QuartWaffle(app)
