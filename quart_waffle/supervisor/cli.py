"""The `quart-waffle` command: `serve` an ASGI app, `reload` it with no request failed."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from .config import ServeConfig, default_control_socket
from .control import request_reload
from .errors import ReloadFailed
from .supervisor import Supervisor


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quart-waffle", description="Serve an ASGI app and reload it with no request failed."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run a supervisor and its Hypercorn workers")
    serve.add_argument("app", help="the ASGI app, as module:attribute")
    serve.add_argument("-b", "--bind", action="append", help="address to listen on (repeatable)")
    serve.add_argument(
        "--insecure-bind", action="append", default=[], help="plain HTTP address next to TLS ones"
    )
    serve.add_argument("-w", "--workers", type=int, default=1)
    serve.add_argument("--min-active", type=int, help="workers accepting throughout a reload")
    serve.add_argument("--graceful-timeout", type=float, default=10.0, metavar="SECONDS")
    serve.add_argument("--keep-alive-timeout", type=float, default=5.0, metavar="SECONDS")
    serve.add_argument("--startup-timeout", type=float, default=60.0, metavar="SECONDS")
    serve.add_argument("--certfile")
    serve.add_argument("--keyfile")
    serve.add_argument("--access-logfile", help="'-' for stderr; no access log by default")
    serve.add_argument("--error-logfile", default="-")
    serve.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error", "critical"]
    )
    serve.add_argument("--backlog", type=int, default=1024)
    serve.add_argument("--pid-file")
    serve.add_argument("--control-socket")

    reload = commands.add_parser("reload", help="roll new workers in and wait for the outcome")
    target = reload.add_mutually_exclusive_group(required=True)
    target.add_argument("--pid-file", help="the pid file the supervisor was started with")
    target.add_argument("--control-socket", help="the control socket it was started with")
    reload.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS")
    return parser


def _config(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(
        app=args.app,
        binds=args.bind or ["127.0.0.1:8000"],
        insecure_binds=args.insecure_bind,
        workers=args.workers,
        min_active=args.min_active,
        graceful_timeout=args.graceful_timeout,
        keep_alive_timeout=args.keep_alive_timeout,
        startup_timeout=args.startup_timeout,
        certfile=args.certfile,
        keyfile=args.keyfile,
        access_logfile=args.access_logfile,
        error_logfile=args.error_logfile,
        log_level=args.log_level,
        backlog=args.backlog,
        control_socket=args.control_socket,
    )


def _serve(config: ServeConfig, pid_file: Path | None) -> int:
    logging.basicConfig(
        level=config.log_level.upper(),
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
    )
    if pid_file is not None:
        pid_file.write_text(f"{os.getpid()}\n")
    try:
        return asyncio.run(Supervisor(config).run())
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)


def _reload(args: argparse.Namespace) -> int:
    path = args.control_socket
    try:
        if path is None:
            path = default_control_socket(int(Path(args.pid_file).read_text()))
        summary = request_reload(path, args.timeout, sys.stdout)
    except ReloadFailed as error:
        print(f"reload failed: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"cannot reach the supervisor at {path or args.pid_file}: {error}", file=sys.stderr)
        return 2
    print(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `quart-waffle` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "reload":
        return _reload(args)
    try:
        config = _config(args)
    except ValueError as error:
        parser.error(str(error))
    return _serve(config, Path(args.pid_file) if args.pid_file else None)
