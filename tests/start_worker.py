"""Start quart-waffle as one worker would, then exit: for the concurrent start test.

Usage: python -m tests.start_worker DATABASE_URL. It prints "ready" once
imported, then waits for a line on stdin, so that several processes can be
released at the same moment.
"""

from __future__ import annotations

import asyncio
import sys

from tests.helpers import make_waffle


async def main(database_url: str) -> None:
    waffle = make_waffle(database_url)
    print("ready", flush=True)
    sys.stdin.readline()
    async with waffle.connected():
        print(f"revision {waffle.revision} greeting {waffle.get('GREETING')}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
