"""`--release-link`: each generation runs the release directory a symbolic link named when it
started, so a generation never mixes code and a rollback returns to the previous release."""

from __future__ import annotations

import logging
import os

log = logging.getLogger("quart_waffle.supervisor")


class ReleaseError(Exception):
    """The release link names no directory; a reload that needs it fails."""


class Releases:
    """The directory each generation runs in: `link` resolved once, when the generation's
    first worker starts; every later worker of that generation (a replacement, a rollback)
    starts in the same directory even if the link has moved since.

    Without a link, every generation runs in the supervisor's working directory.

    Arguments:
        link: A symbolic link such as ``/srv/app/current`` to ``/srv/app/releases/42``.

    Example::

        releases = Releases("/srv/app/current")
        cwd = releases.directory(generation)  # "/srv/app/releases/42"
    """

    def __init__(self, link: str | None) -> None:
        self.link = None if link is None else os.path.abspath(link)
        self._directories: dict[int, str] = {}

    def directory(self, generation: int) -> str | None:
        """The directory `generation` runs in (None: the supervisor's own); resolves the link
        the first time a generation asks. Raises `ReleaseError` if it names no directory."""
        if self.link is None:
            return None
        if (known := self._directories.get(generation)) is not None:
            return known
        resolved = os.path.realpath(self.link)
        if not os.path.isdir(resolved):
            raise ReleaseError(f"release link {self.link}: {resolved} is not a directory")
        self._directories[generation] = resolved
        log.info("Generation %d runs the code in %s (via %s)", generation, resolved, self.link)
        return resolved

    def origin(self, generation: int) -> str | None:
        """The directory `generation` runs in if known, for the reload's outcome."""
        return self._directories.get(generation)
