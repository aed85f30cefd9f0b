"""A Quart app whose next version can be made to break, for the supervisor tests.

Environment:
    WAFFLE_TEST_BROKEN: a file; while it exists, importing this module fails.
    WAFFLE_TEST_STARTUP_FAILS: a file; while it exists, lifespan startup fails.
    WAFFLE_TEST_RELEASE: a file; `GET /hold` answers once it exists (30 s at most).
    WAFFLE_TEST_STARTUP_HANGS: a file; while it exists, lifespan startup never finishes.
    WAFFLE_TEST_CRASHES: a file; while it exists, a worker exits 0.2 s after its startup.
    WAFFLE_TEST_STARTUPS: a file of words, one taken by each lifespan startup: ``fail`` fails
        it, ``ok`` (or nothing left) lets it start. Meant for starts one after another.

`GET /whoami` answers the worker's pid, generation (from ``QUART_WAFFLE_GENERATION``) and the
moment it handled the request (``time.monotonic()``, one clock for every process on Linux).
"""

from __future__ import annotations

import asyncio
import os
import time

from quart import Quart


def _flagged(name: str) -> bool:
    flag = os.environ.get(name)
    return flag is not None and os.path.exists(flag)


if _flagged("WAFFLE_TEST_BROKEN"):
    raise RuntimeError("this version is broken")

app = Quart(__name__)


def _next_startup() -> str:
    """Take the first word of the WAFFLE_TEST_STARTUPS file, if any."""
    flag = os.environ.get("WAFFLE_TEST_STARTUPS")
    if flag is None or not os.path.exists(flag):
        return "ok"
    with open(flag) as file:
        words = file.read().split()
    with open(flag, "w") as file:
        file.write(" ".join(words[1:]))
    return words[0] if words else "ok"


@app.before_serving
async def _startup() -> None:
    if _next_startup() == "fail":
        raise RuntimeError("this start fails on purpose")
    if _flagged("WAFFLE_TEST_STARTUP_FAILS"):
        raise RuntimeError("startup failed on purpose")
    if _flagged("WAFFLE_TEST_STARTUP_HANGS"):
        await asyncio.sleep(600)
    if _flagged("WAFFLE_TEST_CRASHES"):
        asyncio.get_running_loop().call_later(0.2, os._exit, 3)


@app.get("/whoami")
async def whoami() -> dict[str, int | float | str]:
    return {
        "pid": os.getpid(),
        "generation": os.environ.get("QUART_WAFFLE_GENERATION", ""),
        "handled": time.monotonic(),
    }


@app.get("/slow/<float:seconds>")
async def slow(seconds: float) -> dict[str, int]:
    await asyncio.sleep(seconds)
    return {"pid": os.getpid()}


@app.get("/block/<float:seconds>")
async def block(seconds: float) -> dict[str, int]:
    """Blocks the worker's event loop: it can neither answer nor drain meanwhile."""
    time.sleep(seconds)  # noqa: ASYNC251 (blocking is the point)
    return {"pid": os.getpid()}


@app.get("/hold")
async def hold() -> dict[str, int]:
    for _ in range(600):
        if _flagged("WAFFLE_TEST_RELEASE"):
            break
        await asyncio.sleep(0.05)
    return {"pid": os.getpid()}


def create_app(greeting: str = "hello") -> Quart:
    """A factory, for `serve module:create_app(...)`."""
    made = Quart(__name__)

    @made.get("/whoami")
    async def made_whoami() -> dict[str, int | str]:
        return {"pid": os.getpid(), "greeting": greeting}

    return made
