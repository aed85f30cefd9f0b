"""The admin page's fleet panel: every worker of every host, refreshed by the
page's script from ``<prefix>/fleet`` (the body of ``GET <prefix>/api/fleet``,
for the logged-in page), and the line a save shows once the fleet applied it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import StoreUnavailableError
from ..fleet import Acknowledgement
from .inputs import natural_number

if TYPE_CHECKING:
    from ..extension import QuartWaffle

logger = logging.getLogger("quart_waffle.admin")

PAGE_WAIT = 3.0
"""Seconds a save through the page waits for every worker before answering."""


async def fleet_view(waffle: QuartWaffle) -> dict[str, Any] | None:
    """The fleet for the panel, None when its records cannot be read (the
    panel then says so; the page itself still works)."""
    try:
        return (await waffle.fleet()).as_dict()
    except StoreUnavailableError as error:
        logger.warning("the admin page's fleet panel: %s", error)
        return None


def acknowledgement_query(ack: Acknowledgement) -> str:
    """What the redirect after a save carries of ``ack``: numbers only."""
    return f"&applied={ack.applied}&of={ack.expected}&ms={round(ack.elapsed * 1000)}"


def saved_notice(saved: int | None, args: Mapping[str, str]) -> str | None:
    """``"Saved: this worker now serves revision 7. Applied by 4 of 4 workers
    in 12 ms."``; the second sentence only when the save waited."""
    if saved is None:
        return None
    notice = f"Saved: this worker now serves revision {saved}."
    applied, of, ms = (natural_number(args.get(name)) for name in ("applied", "of", "ms"))
    if applied is not None and of is not None and ms is not None and applied <= of:
        plural = "worker" if of == 1 else "workers"
        notice += f" Applied by {applied} of {of} {plural} in {ms} ms."
        if applied < of:
            notice += " The fleet panel below names those that have not."
    return notice
