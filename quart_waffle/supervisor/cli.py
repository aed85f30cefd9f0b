"""The `quart-waffle` command: `serve` an ASGI app, `reload` it with no request failed, `stop`
it, list its `workers`.

Every error is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, NoReturn

from . import configfile, pidfile
from .config import ServeConfig, control_socket_beside
from .control import CommandFailed, request_reload, request_status, request_stop
from .errors import ReloadFailed, ServeError
from .metrics import multiprocess_directory
from .options import MIN_ACTIVE, RANGES, RELOAD_TIMEOUT, integer_option, number_option
from .supervisor import Supervisor
from .worker import WORKER_CLASSES, parse_app

ARGUMENT_FIELDS = {
    "bind": "binds",
    "insecure_bind": "insecure_binds",
    "reload_dir": "reload_dirs",
    "reload_include": "reload_includes",
    "reload_exclude": "reload_excludes",
}
"""`serve` options whose `ServeConfig` field is named otherwise (the others share its name)."""


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
        nargs="?",
        help="the ASGI app: module:attribute (attribute 'app' by default), or a factory call "
        "such as module:create_app() or module:create_app('production') with literal arguments; "
        "may be given as 'app' in the config file instead",
    )
    serve.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        help="TOML config file (Hypercorn's key names), read again at each reload; "
        "options given here override it",
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
        "--fork-server",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fork each generation's workers from one fresh interpreter that has imported the "
        "heavy third-party modules, on Linux (default: on)",
    )
    serve.add_argument(
        "--preload-app",
        action="store_true",
        help="have the fork server import the app's module too: fastest, but only for an app "
        "that opens no connection and starts no thread when imported (default: off)",
    )
    serve.add_argument(
        "--native-accept",
        action="store_true",
        help="uvloop classes: accept plain TCP with uvloop's own server, about 7%% less CPU per "
        "request on a new connection; but a worker out of file descriptors then resets the "
        "connections queued on the shared socket (default: off)",
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
    _target(reload, 600.0, "give up waiting after this long (the reload itself carries on)")
    reload.add_argument(
        "--fresh-fork-server",
        action="store_true",
        help="fork the new workers from a fork server started for this reload, even if "
        "nothing the running one imported changed (say, a data file that a package it "
        "imported read); no effect with --preload-app or --no-fork-server (default: off)",
    )
    stop = commands.add_parser(
        "stop", help="drain every worker, stop the supervisor and wait", formatter_class=_Help
    )
    _target(stop, 60.0, "give up waiting for the supervisor to exit after this long")
    workers = commands.add_parser(
        "workers",
        help="the supervisor's state, generation and workers (not the settings' fleet)",
        formatter_class=_Help,
    )
    _target(workers, 5.0, "give up waiting for the answer after this long")
    workers.add_argument("--json", action="store_true", help="print the state as JSON")
    return parser


def _target(command: argparse.ArgumentParser, timeout: float, timeout_help: str) -> None:
    """The options naming a running supervisor, and how long to wait for it."""
    target = command.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--pid-file", metavar="PATH", help="the pid file the supervisor was started with"
    )
    target.add_argument(
        "--control-socket", metavar="PATH", help="the control socket it was started with"
    )
    command.add_argument(
        "--timeout",
        type=number_option(RELOAD_TIMEOUT),
        default=timeout,
        metavar="SECONDS",
        help=timeout_help,
    )


def _explicit(argv: list[str] | None) -> set[str]:
    """The `serve` options given on the command line (they override the config file)."""
    parser = _parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for option in action.choices["serve"]._actions:
                option.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def _resolve(args: argparse.Namespace, explicit: set[str]) -> tuple[ServeConfig, str | None]:
    """The configuration: the command line's options over the config file's values over the
    defaults; and the pid file. Raises `ValueError` with one line."""
    names = {field.name for field in dataclasses.fields(ServeConfig)} | {configfile.PID_FILE}
    from_file = configfile.load(args.config) if args.config else {}
    values: dict[str, Any] = {}
    for dest, value in vars(args).items():
        name = ARGUMENT_FIELDS.get(dest, dest)
        if name in names:
            values[name] = value if dest in explicit or name not in from_file else from_file[name]
    for name, value in from_file.items():
        values.setdefault(name, value)  # a field with no command-line option
    if values.get("binds") is None:
        values.pop("binds", None)  # the default address
    pid_file = values.pop(configfile.PID_FILE, None)
    if not values.get("app"):
        raise ValueError("no app: give APP, or 'app' in the config file")
    parse_app(values["app"])
    if values.get("control_socket") is None and pid_file:
        values["control_socket"] = control_socket_beside(pid_file)
    return ServeConfig(**values), pid_file


def _rereader(
    args: argparse.Namespace, explicit: set[str], pid_file: str | None
) -> Callable[[], ServeConfig] | None:
    """What a reload calls for its configuration: the config file read anew (no file: None)."""
    if not args.config:
        return None

    def reread() -> ServeConfig:
        config, new_pid_file = _resolve(args, explicit)
        if new_pid_file != pid_file:
            raise ValueError(
                f"the configuration changes pid_path {pid_file!r} -> {new_pid_file!r}: "
                "the pid file changes only with a restart; nothing was replaced"
            )
        return config

    return reread


def _serve(
    config: ServeConfig, pid_file: str | None, reread: Callable[[], ServeConfig] | None
) -> int:
    logfile = config.error_logfile if config.error_logfile not in ("", "-") else None
    try:
        logging.basicConfig(
            level=config.log_level.upper(),
            format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
            filename=logfile,
        )
    except OSError as error:
        print(
            f"quart-waffle serve: cannot open the error log {logfile}: {error.strerror}",
            file=sys.stderr,
        )
        return 1
    try:
        if pid_file is not None:
            pidfile.claim(pid_file)
        try:
            with multiprocess_directory():  # the workers' metrics add up (the metrics extra)
                return asyncio.run(Supervisor(config, reread=reread).run())
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
        summary = request_reload(
            path, args.timeout, sys.stdout, fresh_fork_server=args.fresh_fork_server
        )
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


def _control_path(args: argparse.Namespace) -> str:
    """The control socket named by ``--control-socket``, or beside ``--pid-file``."""
    if args.control_socket is not None:
        return str(args.control_socket)
    pidfile.read_pid(args.pid_file)  # a link or a file with no pid is refused here
    return control_socket_beside(args.pid_file)


def _unreachable(args: argparse.Namespace, error: OSError | ValueError) -> int:
    path = args.control_socket or args.pid_file
    reason = error.strerror if isinstance(error, OSError) and error.strerror else error
    print(f"cannot reach the supervisor at {path}: {reason}", file=sys.stderr)
    return 1


def _stop(args: argparse.Namespace) -> int:
    try:
        pid = request_stop(_control_path(args), args.timeout)
    except CommandFailed as error:
        print(f"stop failed: {error}", file=sys.stderr)
        return 1
    except TimeoutError as error:
        print(f"stop timed out: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        return _unreachable(args, error)
    print(f"supervisor {pid} stopped")
    return 0


def _workers(args: argparse.Namespace) -> int:
    try:
        status = request_status(_control_path(args), args.timeout)
    except CommandFailed as error:
        print(f"workers failed: {error}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        return _unreachable(args, error)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(
        f"supervisor {status['pid']} {status['state']}: {status['app']}, generation "
        f"{status['generation']}, {status['workers_wanted']} worker(s) wanted, "
        f"up {_duration(status['uptime'])}, listening on {', '.join(status['listening'])}"
    )
    rows = [("PID", "GEN", "STATE", "AGE", "REQUESTS")] + [
        (
            str(worker["pid"]),
            str(worker["generation"]),
            worker["state"],
            _duration(worker["age"]),
            "-" if worker["requests"] is None else str(worker["requests"]),
        )
        for worker in status["workers"]
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip())
    return 0


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `quart-waffle` console script."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # a reader gone away (`| head`) shows here, not at exit
    except BrokenPipeError:
        # as Python's docs on SIGPIPE advise: exit quietly, stdout on devnull so that the
        # exit's own flush finds no closed pipe either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run(argv: list[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "reload":
        return _reload(args)
    if args.command == "stop":
        return _stop(args)
    if args.command == "workers":
        return _workers(args)
    if args.config:
        args.config = configfile.absolute(args.config)
    explicit = _explicit(argv)
    try:
        config, pid_file = _resolve(args, explicit)
    except ValueError as error:
        parser.error(str(error))
    return _serve(config, pid_file, _rereader(args, explicit, pid_file))
