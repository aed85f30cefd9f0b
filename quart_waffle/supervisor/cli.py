"""The `quart-waffle` command: `serve` an ASGI app, `reload` it with no request failed.

Every error is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from importlib.metadata import version
from typing import NoReturn

from . import pidfile
from .config import ServeConfig, control_socket_beside
from .control import request_reload
from .errors import ReloadFailed, ServeError
from .metrics import multiprocess_directory
from .options import MIN_ACTIVE, RANGES, RELOAD_TIMEOUT, integer_option, number_option
from .reloader import check_available as check_reload_available
from .supervisor import Supervisor
from .worker import WORKER_CLASSES, parse_app


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line and exit status 1, as every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: {message} (see --help)\n")


class _Help(argparse.HelpFormatter):
    """Every option's help ends with its default (options without a value say it in words)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        if action.option_strings and action.nargs != 0 and "(default" not in help:
            help += (
                " (default: none)" if action.default in (None, []) else " (default: %(default)s)"
            )
        return help


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="quart-waffle", description="Serve an ASGI app and reload it with no request failed."
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version('quart-waffle')}"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser(
        "serve", help="run a supervisor and its Hypercorn workers", formatter_class=_Help
    )
    serve.add_argument(
        "app",
        help="the ASGI app: module:attribute (attribute 'app' by default), or a factory call "
        "such as module:create_app() or module:create_app('production') with literal arguments",
    )
    serve.add_argument(
        "-b",
        "--bind",
        action="append",
        metavar="ADDRESS",
        help="host:port, [::1]:port, unix:PATH or fd://N; repeatable (default: 127.0.0.1:8000)",
    )
    serve.add_argument(
        "--insecure-bind",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="plain HTTP address next to TLS ones; repeatable",
    )
    serve.add_argument(
        "-w",
        "--workers",
        type=integer_option(RANGES["workers"]),
        default=1,
        help="worker processes",
    )
    serve.add_argument(
        "--min-active",
        type=integer_option(MIN_ACTIVE),
        metavar="N",
        help="workers accepting throughout a reload; the others may drain before their "
        "replacement is ready (default: all workers)",
    )
    serve.add_argument(
        "--max-surge",
        type=integer_option(RANGES["max_surge"]),
        default=1,
        metavar="N",
        help="replacements a reload starts ahead of drains, beyond --workers",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=number_option(RANGES["graceful_timeout"]),
        default=10.0,
        metavar="SECONDS",
        help="time a draining worker has to answer what it accepted before it is killed",
    )
    serve.add_argument(
        "--keep-alive-timeout",
        type=number_option(RANGES["keep_alive_timeout"]),
        default=5.0,
        metavar="SECONDS",
        help="time an idle keep-alive connection stays open",
    )
    serve.add_argument(
        "--startup-timeout",
        type=number_option(RANGES["startup_timeout"]),
        default=60.0,
        metavar="SECONDS",
        help="time a new worker has to import the app and finish lifespan startup",
    )
    serve.add_argument(
        "--max-requests",
        type=integer_option(RANGES["max_requests"]),
        default=0,
        metavar="N",
        help="replace a worker after N requests, rolling, never below --min-active; 0 never",
    )
    serve.add_argument(
        "--max-requests-jitter",
        type=integer_option(RANGES["max_requests_jitter"]),
        default=0,
        metavar="N",
        help="add up to N requests, drawn per worker, to --max-requests",
    )
    serve.add_argument(
        "--max-worker-lifetime",
        type=number_option(RANGES["max_worker_lifetime"]),
        default=0.0,
        metavar="SECONDS",
        help="replace a worker after it has served this long, rolling, never below "
        "--min-active; 0 never",
    )
    serve.add_argument(
        "--max-worker-lifetime-jitter",
        type=number_option(RANGES["max_worker_lifetime_jitter"]),
        default=0.0,
        metavar="SECONDS",
        help="add up to this many seconds, drawn per worker, to --max-worker-lifetime",
    )
    serve.add_argument(
        "--reload",
        action="store_true",
        help="development: roll the workers when the code changes; needs the reload extra "
        "(default: off)",
    )
    serve.add_argument(
        "--reload-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="directory --reload watches instead of the working directory; repeatable",
    )
    serve.add_argument(
        "--reload-include",
        action="append",
        default=[],
        metavar="PATTERN",
        help="file name pattern --reload watches instead of *.py; repeatable",
    )
    serve.add_argument(
        "--reload-exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="file name pattern --reload ignores; repeatable",
    )
    serve.add_argument(
        "--release-link",
        metavar="PATH",
        help="a symbolic link to the release directory to run (such as /srv/app/current), "
        "resolved once per reload: each generation runs the directory it named then",
    )
    serve.add_argument(
        "--timeout",
        type=number_option(RANGES["timeout"]),
        default=30.0,
        metavar="SECONDS",
        help="kill and replace a worker whose event loop is silent this long; 0 disables",
    )
    serve.add_argument(
        "-k",
        "--worker-class",
        default="hypercorn",
        choices=list(WORKER_CLASSES),
        help="the server each worker runs: hypercorn (asyncio), hypercorn-uvloop, or uvicorn "
        "(httptools + uvloop); the last two need the uvicorn extra",
    )
    serve.add_argument(
        "--metrics-file",
        metavar="PATH",
        help="write the supervisor's Prometheus metrics to PATH (for node_exporter's textfile "
        "collector), replaced atomically",
    )
    serve.add_argument("--certfile", metavar="PATH", help="TLS certificate (PEM)")
    serve.add_argument("--keyfile", metavar="PATH", help="TLS private key (PEM)")
    serve.add_argument(
        "--access-logfile", metavar="PATH", help="access log, '-' for stderr (default: none)"
    )
    serve.add_argument("--error-logfile", default="-", metavar="PATH", help="'-' for stderr")
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error", "critical"],
        help="level of the supervisor's and the workers' logs",
    )
    serve.add_argument(
        "--backlog",
        type=integer_option(RANGES["backlog"]),
        default=1024,
        help="the kernel's accept queue",
    )
    serve.add_argument(
        "--pid-file",
        metavar="PATH",
        help="write the supervisor's pid there; refuse to start while it names a live process",
    )
    serve.add_argument(
        "--control-socket",
        metavar="PATH",
        help="unix socket that reload talks to (default: PID_FILE.sock beside --pid-file, else "
        "$XDG_RUNTIME_DIR/quart-waffle-<pid>.sock, else a fresh private temporary directory)",
    )

    reload = commands.add_parser(
        "reload", help="roll new workers in and wait for the outcome", formatter_class=_Help
    )
    target = reload.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--pid-file", metavar="PATH", help="the pid file the supervisor was started with"
    )
    target.add_argument(
        "--control-socket", metavar="PATH", help="the control socket it was started with"
    )
    reload.add_argument(
        "--timeout",
        type=number_option(RELOAD_TIMEOUT),
        default=600.0,
        metavar="SECONDS",
        help="give up waiting after this long (the reload itself carries on)",
    )
    return parser


def _config(args: argparse.Namespace) -> ServeConfig:
    parse_app(args.app)
    if args.reload:
        check_reload_available()
    return ServeConfig(
        app=args.app,
        binds=args.bind or ["127.0.0.1:8000"],
        insecure_binds=args.insecure_bind,
        workers=args.workers,
        min_active=args.min_active,
        max_surge=args.max_surge,
        graceful_timeout=args.graceful_timeout,
        keep_alive_timeout=args.keep_alive_timeout,
        startup_timeout=args.startup_timeout,
        timeout=args.timeout,
        max_requests=args.max_requests,
        max_requests_jitter=args.max_requests_jitter,
        worker_class=args.worker_class,
        max_worker_lifetime=args.max_worker_lifetime,
        max_worker_lifetime_jitter=args.max_worker_lifetime_jitter,
        metrics_file=args.metrics_file,
        reload=args.reload,
        reload_dirs=args.reload_dir,
        reload_includes=args.reload_include,
        reload_excludes=args.reload_exclude,
        release_link=args.release_link,
        certfile=args.certfile,
        keyfile=args.keyfile,
        access_logfile=args.access_logfile,
        error_logfile=args.error_logfile,
        log_level=args.log_level,
        backlog=args.backlog,
        control_socket=args.control_socket
        or (control_socket_beside(args.pid_file) if args.pid_file else None),
    )


def _serve(config: ServeConfig, pid_file: str | None) -> int:
    logging.basicConfig(
        level=config.log_level.upper(),
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
    )
    try:
        if pid_file is not None:
            pidfile.claim(pid_file)
        try:
            with multiprocess_directory():  # the workers' metrics add up (the metrics extra)
                return asyncio.run(Supervisor(config).run())
        finally:
            if pid_file is not None:
                pidfile.release(pid_file)
    except ServeError as error:
        print(f"quart-waffle serve: {error}", file=sys.stderr)
        return 1


def _reload(args: argparse.Namespace) -> int:
    path = args.control_socket or args.pid_file
    try:
        if args.control_socket is None:
            pidfile.read_pid(args.pid_file)  # a link or a file with no pid is refused here
            path = control_socket_beside(args.pid_file)
        summary = request_reload(path, args.timeout, sys.stdout)
    except ReloadFailed as error:
        print(f"reload failed: {error}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(
            f"reload timed out: no outcome within {args.timeout:g} s (the supervisor carries on;"
            " its log has the outcome)",
            file=sys.stderr,
        )
        return 1
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        print(f"cannot reach the supervisor at {path}: {reason}", file=sys.stderr)
        return 1
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
    return _serve(config, args.pid_file)
