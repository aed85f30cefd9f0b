"""The supervisor test app (`testapp`, its flags included), with a marker of where its module
was imported, for the fork server tests.

`GET /origin` answers the worker's pid and generation, the pid that imported this module (the
fork server's with ``--preload-app``) and whether the worker was forked by a fork server.
`GET /note` writes a line to the file ``WAFFLE_TEST_NOTES`` names, opened when the module is
imported and never flushed: only the worker's exit writes it out.
"""

from __future__ import annotations

import os
import sys

from tests.supervisor_apps.testapp import app

IMPORTED_BY = os.getpid()
NOTES = open(os.environ.get("WAFFLE_TEST_NOTES", os.devnull), "a")  # noqa: SIM115

__all__ = ["app"]


@app.get("/origin")
async def origin() -> dict[str, int | bool | str]:
    return {
        "pid": os.getpid(),
        "generation": os.environ.get("QUART_WAFFLE_GENERATION", ""),
        "imported_by": IMPORTED_BY,
        # a forked worker's command line is its fork server's
        "forked": any("supervisor.zygote" in arg for arg in sys.orig_argv),
    }


@app.get("/note")
async def note() -> dict[str, int]:
    NOTES.write(f"{os.getpid()}\n")
    return {"pid": os.getpid()}
