"""The ``accord`` command: the composition root for operators and auditors."""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType

import grpc

from adapters import cli_client, cli_log
from adapters.demo import DemoError, DemoOptions, run_demo
from adapters.grpc.interceptor import AccordInterceptor
from adapters.grpc.limits import StreamSlots
from adapters.grpc.server import ListenError, ServerOptions, start_server
from adapters.grpc.services.catalog import SERVICE_NAMES, registrations
from adapters.grpc.tokens import ROLES, Authenticator, TokensFileError, add_token
from adapters.logging import configure_logging, say
from adapters.metrics import Metrics, MetricsServer, start_metrics_server
from adapters.projection_worker import ProjectionWorker
from adapters.rebuild import REBUILD_BATCH
from adapters.rebuild import rebuild as rebuild_read_models
from adapters.store import StoreConfig, StoreConfigError, store_config
from adapters.wiring import build_accord, build_read_models, build_view_store
from application.errors import StoreUnavailableError
from application.personal_data import MasterKeyError
from application.service import Accord
from projections import audit_trail
from projections.catalog import all_projections
from projections.read_models import ReadModels
from projections.runner import Progress

HEALTH_PROBE_SECONDS = 2.0
"""How often the server asks its store whether it answers, for the health service."""


def _open(
    args: argparse.Namespace, *, metrics: Metrics | None = None
) -> tuple[StoreConfig, Accord]:
    config = store_config(args.database_url)
    return config, build_accord(config, observer=metrics.commands if metrics else None)


def _init(args: argparse.Namespace) -> int:
    config, app = _open(args)
    with app:
        build_view_store(app, config).create_tables()  # the read models' tables too
        position = app.log.recorder.max_notification_id() or 0
    print(f"Accord store ready: {config.safe_url} ({config.kind}), log position {position}")
    return 0


def settle_collector() -> None:
    """Keep the cyclic garbage collector's pauses out of request latency.

    Everything loaded at start (modules, descriptors, pydantic's schemas) is
    moved out of the collector's sight, and young collections run less often:
    a serving process allocates many short-lived objects, and a pass over a
    large heap adds its milliseconds to whichever request happens to trigger it.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


GC_YOUNG_THRESHOLD = 20_000
"""Allocations between young collections (Python's default is 700)."""


def _stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT finish the batch in hand (one transaction) and stop cleanly."""
    stop = threading.Event()

    def handle(signum: int, _: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def _stop_with_parent(parent: int, stop: threading.Event) -> None:
    """Set ``stop`` when the process that started this one is gone (even if it was killed)."""

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent:
                say("accord project: the server is gone, stopping")
                stop.set()

    threading.Thread(target=watch, name="accord-parent-watch", daemon=True).start()


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def _read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ServeError(f"cannot read the {what} {path}: {error.strerror}") from None


class ServeError(Exception):
    """`accord serve` cannot start as configured; the message says what to change."""


def _credentials(args: argparse.Namespace) -> grpc.ServerCredentials | None:
    cert = args.tls_cert or os.environ.get("ACCORD_TLS_CERT")
    key = args.tls_key or os.environ.get("ACCORD_TLS_KEY")
    client_ca = args.tls_client_ca or os.environ.get("ACCORD_TLS_CLIENT_CA")
    if not cert and not key:
        if client_ca:
            raise ServeError("client certificates need TLS: give --tls-cert and --tls-key too")
        return None
    if not (cert and key):
        raise ServeError("TLS needs both --tls-cert and --tls-key")
    pair = (_read_file(key, "TLS key"), _read_file(cert, "TLS certificate"))
    if client_ca:
        return grpc.ssl_server_credentials(
            [pair], root_certificates=_read_file(client_ca, "client CA"), require_client_auth=True
        )
    return grpc.ssl_server_credentials([pair])


def _authenticator(args: argparse.Namespace) -> Authenticator | None:
    path = args.tokens_file or os.environ.get("ACCORD_TOKENS_FILE")
    if not path:
        return None
    try:
        authenticator = Authenticator(Path(path))
    except (OSError, TokensFileError) as error:
        raise ServeError(f"cannot use the tokens file: {error}") from None
    return authenticator


def _metrics_address(args: argparse.Namespace) -> tuple[str, int] | None:
    """Where to serve metrics; ``None`` (off) unless a port is given: nothing listens uninvited."""
    port = args.metrics_port
    if port is None:
        given = os.environ.get("ACCORD_METRICS_PORT")
        if not given:
            return None
        try:
            port = int(given)
        except ValueError:
            raise ServeError(f"ACCORD_METRICS_PORT is not a port number: {given!r}") from None
    return args.metrics_host or os.environ.get("ACCORD_METRICS_HOST") or "127.0.0.1", port


def _max_streams(args: argparse.Namespace) -> int | None:
    """``--max-streams`` or ``ACCORD_MAX_STREAMS``; ``None``: the default (half the workers)."""
    given = args.max_streams or os.environ.get("ACCORD_MAX_STREAMS")
    if not given:
        return None
    try:
        limit = int(given)
    except ValueError:
        raise ServeError(f"the stream limit is not a whole number: {given!r}") from None
    if limit < 1:
        raise ServeError(f"the stream limit must be at least 1, not {limit}")
    return limit


def _export(
    metrics: Metrics | None, at: tuple[str, int] | None, views: ReadModels, app: Accord
) -> MetricsServer | None:
    """Start the ``/metrics`` endpoint (before the gRPC port opens, so a busy port fails fast)."""
    if at is None:
        return None
    metrics = metrics or Metrics()
    metrics.watch(views, app.clock.now)
    try:
        return start_metrics_server(at[0], at[1], metrics.registry)
    except OSError as error:
        raise ServeError(f"cannot serve metrics on {at[0]}:{at[1]}: {error.strerror}") from None


def _serve(args: argparse.Namespace) -> int:
    host = args.host or os.environ.get("ACCORD_HOST") or "127.0.0.1"
    port = args.port if args.port is not None else int(os.environ.get("ACCORD_PORT", "50051"))
    try:
        authenticator = _authenticator(args)
        credentials = _credentials(args)
        metrics_at = _metrics_address(args)
        options = ServerOptions(host=host, port=port, max_streams=_max_streams(args))
    except ServeError as error:
        print(f"accord: {error}", file=sys.stderr)
        return 2
    if host not in LOOPBACK and authenticator is None:
        print(
            f"accord: refusing to listen on {host}: no tokens are configured, so every caller "
            "would be an administrator; listen on 127.0.0.1 or configure tokens "
            "(--tokens-file or ACCORD_TOKENS_FILE)",
            file=sys.stderr,
        )
        return 2
    if host not in LOOPBACK and credentials is None and not args.allow_plaintext:
        print(
            f"accord: refusing to listen on {host} without TLS: bearer tokens would cross the "
            "network in clear text; give --tls-cert and --tls-key (or --allow-plaintext when a "
            "proxy or mesh terminates TLS)",
            file=sys.stderr,
        )
        return 2
    metrics = Metrics() if metrics_at else None
    config, app = _open(args, metrics=metrics)
    with app:
        if metrics is not None:  # the server's own batches; a worker's would stay at zero
            metrics.watch_batches(app.coalescers())
        views = build_read_models(app, config)
        try:
            exporter = _export(metrics, metrics_at, views, app)
        except ServeError as error:
            print(f"accord: {error}", file=sys.stderr)
            return 2
        worker: ProjectionWorker | None = None
        in_child = config.kind == "postgres" and not args.projections_in_process
        if not args.no_projections and in_child:
            worker = ProjectionWorker(config)  # a core of its own (see the module)
            worker.start()
        elif not args.no_projections:
            views.start()  # a thread; on SQLite always: one file, one process writing views
        streams = StreamSlots(options.stream_limit)
        try:
            running = start_server(
                options,
                registrations(app, views),
                SERVICE_NAMES,
                interceptors=[AccordInterceptor(authenticator, metrics=metrics, streams=streams)],
                credentials=credentials,
            )
        except ListenError as error:
            views.stop()
            if worker is not None:
                worker.stop()
            print(f"accord: {error}", file=sys.stderr)
            return 2
        security = (
            f"tokens: {authenticator.path}"
            if authenticator
            else "no tokens configured: loopback only, every caller is a local admin"
        )
        transport = (
            "TLS with client certificates"
            if args.tls_client_ca or os.environ.get("ACCORD_TLS_CLIENT_CA")
            else ("TLS" if credentials else "plaintext")
        )
        stop = _stop_on_signals()  # before the banner: a SIGTERM right after it stops cleanly
        settle_collector()
        threading.Thread(
            target=running.follow_store,
            args=(app.store_answers, stop, HEALTH_PROBE_SECONDS),
            name="accord-health",
            daemon=True,
        ).start()
        print(
            f"Accord listening on {host}:{running.port} (store: {config.safe_url}; "
            f"{security}; {transport})",
            flush=True,
        )
        if exporter is not None:  # after the banner: the first line says where gRPC listens
            print(f"Accord metrics on {exporter.url}", flush=True)
        # Wake now and then: a signal delivered to another thread runs its handler only
        # when the main thread runs again, and a wait without a timeout may never return.
        while not stop.wait(0.5):
            pass
        running.stop(ServerOptions().grace_seconds)
        views.stop()
        if worker is not None:
            worker.stop()
        if exporter is not None:
            exporter.stop()
    print("Accord stopped", flush=True)
    return 0


def _tokens_add(args: argparse.Namespace) -> int:
    path = args.tokens_file or os.environ.get("ACCORD_TOKENS_FILE")
    if not path:
        print("accord: name the tokens file (--tokens-file or ACCORD_TOKENS_FILE)", file=sys.stderr)
        return 2
    try:
        token = add_token(Path(path), args.principal, args.role, args.expires_at)
    except TokensFileError as error:
        print(f"accord: {error}", file=sys.stderr)
        return 2
    print(token)
    print(
        f"added {args.principal} ({', '.join(args.role)}) to {path}; this token is shown once",
        file=sys.stderr,
    )
    return 0


def _project(args: argparse.Namespace) -> int:
    try:
        metrics_at = None if args.once else _metrics_address(args)
    except ServeError as error:
        print(f"accord: {error}", file=sys.stderr)
        return 2
    config, app = _open(args)
    with app:
        views = build_read_models(app, config, batch_size=args.batch_size)
        if args.once:
            applied = views.runner.catch_up()
            print(
                json.dumps(
                    {"applied": applied, "position": app.log.recorder.max_notification_id() or 0}
                )
            )
            return 0
        try:
            exporter = _export(None, metrics_at, views, app)
        except ServeError as error:
            print(f"accord: {error}", file=sys.stderr)
            return 2
        stop = _stop_on_signals()
        if args.parent_pid is not None:
            _stop_with_parent(args.parent_pid, stop)
        say(f"accord project: following {config.safe_url}")
        if exporter is not None:
            say(f"accord project: metrics on {exporter.url}")
        views.work(stop)
        if exporter is not None:
            exporter.stop()
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    known = [p.name for p in all_projections()]
    chosen = known if args.all else list(dict.fromkeys(args.names))
    if not chosen:
        print("accord: name the read models to rebuild (or --all)", file=sys.stderr)
        return 2
    unknown = [name for name in chosen if name not in known]
    if unknown:
        print(f"accord: no read model {unknown[0]!r}; choose from {sorted(known)}", file=sys.stderr)
        return 2
    title = ", ".join(chosen) if len(chosen) < len(known) else "all read models"
    config, app = _open(args)
    with app, cli_log.interruptible() as stop:
        views = build_read_models(app, config, batch_size=args.batch_size)
        progress = Progress(title)
        bar = cli_log.progress_bar(f"rebuild {title}")
        bar.console.file = sys.stderr
        done = threading.Event()

        def report() -> None:
            task = bar.add_task(title, total=None, rate="")
            while not done.wait(0.5):
                rate = progress.events / max(time.monotonic() - progress.started, 1e-9)
                bar.update(
                    task,
                    total=progress.head or None,
                    completed=progress.position,
                    rate=f"{rate:,.0f} events/s",
                )

        reporter = threading.Thread(target=report, daemon=True)
        with bar:
            reporter.start()
            try:
                rebuilt = rebuild_read_models(
                    app, config, views, chosen, workers=args.workers, progress=progress, stop=stop
                )
            finally:
                done.set()
                reporter.join()
        for name in chosen:
            generation = rebuilt.generations[name] if rebuilt else None
            print(
                json.dumps({"name": name, "generation": generation, "position": progress.position})
            )
    if rebuilt is None:
        print(
            f"accord: rebuild of {title} paused at position {progress.position}; the serving "
            "copies are untouched; run the same command again to resume",
            file=sys.stderr,
        )
        return cli_log.INTERRUPTED
    return 0


def _digest(args: argparse.Namespace) -> int:
    config, app = _open(args)
    with app:
        views = build_read_models(app, config)
        views.runner.catch_up()
        with views.read(audit_trail.NAME) as reader:
            position, digest = audit_trail.digest(reader)
    print(json.dumps({"position": position, "hash": digest}))
    return 0


def _verify(args: argparse.Namespace) -> int:
    if args.export is not None:
        return cli_log.verify_export_command(args)
    if args.position is None or args.hash is None:
        print("accord: verify needs --position and --hash (or --export FILE)", file=sys.stderr)
        return 2
    config, app = _open(args)
    with app, cli_log.interruptible() as stop:
        views = build_read_models(app, config)
        views.runner.catch_up()
        bar = cli_log.progress_bar("verify")
        bar.console.file = sys.stderr
        with bar, views.read(audit_trail.NAME) as reader:
            task = bar.add_task("verify", total=args.position, rate="")

            def advance(position: int) -> None:
                rate = position / (bar.tasks[task].elapsed or 1e-9)
                bar.update(task, completed=position, rate=f"{rate:,.0f} events/s")

            try:
                result = audit_trail.verify(
                    app.log.recorder,
                    reader,
                    args.position,
                    args.hash,
                    progress=advance,
                    stop=stop.is_set,
                )
            except audit_trail.VerificationStopped as stopped:
                print(
                    f"accord: verification stopped at position {stopped.position} with no "
                    "verdict; it changed nothing, run it again to check",
                    file=sys.stderr,
                )
                return cli_log.INTERRUPTED
    print(
        json.dumps(
            {
                "ok": result.ok,
                "position": result.position,
                "first_mismatch_position": result.first_mismatch_position,
            }
        )
    )
    return 0 if result.ok else 1


def _demo(args: argparse.Namespace) -> int:
    """Load the demo data set; SIGINT stops between commands and a rerun resumes."""
    configure_logging(level=os.environ.get("ACCORD_LOG_LEVEL") or "WARNING")
    config = store_config(args.database_url)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        summary = run_demo(
            config,
            DemoOptions(seed=args.seed, scale=args.scale, if_empty=args.if_empty),
            stop=stop,
        )
    except DemoError as error:
        print(f"accord: {error}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, previous)
    if summary.skipped:
        print(
            f"Accord demo: {config.safe_url} already holds events (log position "
            f"{summary.log_position}); nothing loaded"
        )
        return 0
    if not summary.complete:
        print(
            f"accord demo: interrupted after {summary.steps} commands; run the same command "
            "again to resume where it stopped",
            file=sys.stderr,
        )
        return 130
    print(
        f"Accord demo loaded into {config.safe_url}: {summary.customers} customers, "
        f"{summary.partners} partners, {summary.log_position} events "
        f"({summary.recorded} commands recorded, {summary.replayed} replayed; "
        f"{summary.shares} shares, {summary.refused_shares} refused) from "
        f"{summary.start:%Y-%m-%d} to {summary.end:%Y-%m-%d} in {summary.elapsed:.1f} s"
    )
    return 0


def _chain_hash(text: str) -> str:
    """A digest's hash as printed by ``accord digest``: 64 hex digits, either case."""
    value = text.strip().lower()
    if len(value) != 64 or any(ch not in "0123456789abcdef" for ch in value):
        raise argparse.ArgumentTypeError("must be 64 hex digits (the hash `accord digest` printed)")
    return value


def _aware_datetime(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a UTC offset, e.g. 2027-01-01T00:00:00+00:00")
    return moment


def _metrics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on this port (default $ACCORD_METRICS_PORT; "
        "off when neither is given; 0 picks a free one)",
    )
    parser.add_argument(
        "--metrics-host",
        help="address for the metrics endpoint (default $ACCORD_METRICS_HOST or 127.0.0.1)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="accord", description="Event-sourced engine for customer and partner relationships."
    )
    parser.add_argument(
        "--database-url",
        help="sqlite:///accord.db (default) or postgresql://user@host:5432/db; "
        "defaults to $ACCORD_DATABASE_URL",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    init = commands.add_parser("init", help="create the store's tables (idempotent) and say where")
    init.set_defaults(handler=_init)

    serve = commands.add_parser("serve", help="start the gRPC server (and the read models)")
    serve.add_argument("--host", help="address to listen on (default $ACCORD_HOST or 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, help="port (default $ACCORD_PORT or 50051; 0 picks a free one)"
    )
    serve.add_argument("--tokens-file", help="TOML file of token hashes ($ACCORD_TOKENS_FILE)")
    serve.add_argument("--tls-cert", help="PEM certificate chain ($ACCORD_TLS_CERT)")
    serve.add_argument("--tls-key", help="PEM private key ($ACCORD_TLS_KEY)")
    serve.add_argument(
        "--tls-client-ca",
        help="PEM CA bundle: require client certificates signed by it ($ACCORD_TLS_CLIENT_CA)",
    )
    serve.add_argument(
        "--allow-plaintext",
        action="store_true",
        help="allow a non-loopback address without TLS (a proxy or mesh terminates TLS)",
    )
    serve.add_argument(
        "--max-streams",
        help="concurrent ReadEvents/GetAggregateHistory streams beyond which a new one is "
        "refused with RESOURCE_EXHAUSTED ($ACCORD_MAX_STREAMS; default half the worker threads)",
    )
    serve.add_argument(
        "--no-projections",
        action="store_true",
        help="do not keep the read models current at all (run `accord project` instead)",
    )
    serve.add_argument(
        "--projections-in-process",
        action="store_true",
        help="on PostgreSQL, follow the read models in a thread of this process rather than "
        "in the child `accord project` worker it starts by default",
    )
    _metrics_arguments(serve)
    serve.set_defaults(handler=_serve)

    tokens = commands.add_parser("tokens", help="manage bearer tokens")
    token_commands = tokens.add_subparsers(dest="tokens_command", required=True)
    add = token_commands.add_parser(
        "add", help="print a new random token once and append its hash to the tokens file"
    )
    add.add_argument("--tokens-file", help="defaults to $ACCORD_TOKENS_FILE")
    add.add_argument("--principal", required=True, help="who holds it (the events' actor)")
    add.add_argument(
        "--role",
        required=True,
        nargs="+",
        action="extend",
        choices=ROLES,
        help="one or more roles (--role writer reader, or --role writer --role reader)",
    )
    add.add_argument(
        "--expires-at",
        type=_aware_datetime,
        help="ISO 8601 time with offset after which the token is refused",
    )
    add.set_defaults(handler=_tokens_add)

    project = commands.add_parser(
        "project", help="keep the read models current (one active worker per read model)"
    )
    project.add_argument("--once", action="store_true", help="catch up, then exit")
    project.add_argument(
        "--parent-pid",
        type=int,
        help=argparse.SUPPRESS,  # set by `accord serve` for its own worker: stop when it is gone
    )
    project.add_argument("--batch-size", type=cli_log.positive, default=500)
    _metrics_arguments(project)
    project.set_defaults(handler=_project)

    rebuild = commands.add_parser(
        "rebuild",
        help="rebuild read models from position 0 beside the serving copies, in one pass",
    )
    rebuild.add_argument("names", nargs="*", metavar="NAME")
    rebuild.add_argument("--all", action="store_true", help="every read model")
    rebuild.add_argument(
        "--batch-size",
        type=cli_log.positive,
        default=REBUILD_BATCH,
        help=f"events a batch reads and commits (default {REBUILD_BATCH})",
    )
    rebuild.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes to rebuild with (PostgreSQL; default: up to 2, one per core)",
    )
    rebuild.set_defaults(handler=_rebuild)

    digest = commands.add_parser("digest", help="print the audit chain's (position, hash)")
    digest.set_defaults(handler=_digest)

    verify = commands.add_parser(
        "verify", help="check the log up to a digest given earlier (exit 1 if it changed)"
    )
    verify.add_argument("--position", type=int, help="the digest's position")
    verify.add_argument("--hash", type=_chain_hash, help="the digest's hash")
    verify.add_argument(
        "--export",
        type=Path,
        help="verify this export file offline instead of the store (the digest is optional)",
    )
    verify.set_defaults(handler=_verify)

    demo = commands.add_parser(
        "demo", help="load a deterministic, realistic synthetic data set (three years of history)"
    )
    demo.add_argument("--seed", type=int, default=7, help="the same seed tells the same story")
    demo.add_argument(
        "--scale", type=cli_log.positive, default=1, help="multiplies the customers (1: about 60)"
    )
    demo.add_argument(
        "--if-empty",
        action="store_true",
        help="do nothing if the store holds other events or this demo complete "
        "(an interrupted load is finished)",
    )
    demo.set_defaults(handler=_demo)
    cli_log.register(commands)
    cli_client.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        code: int = args.handler(args)
    except StoreConfigError as error:
        print(f"accord: invalid ACCORD_DATABASE_URL: {error}", file=sys.stderr)
        return 2
    except MasterKeyError as error:
        print(f"accord: {error}", file=sys.stderr)
        return 2
    except StoreUnavailableError as error:
        print(f"accord: {error}", file=sys.stderr)
        return 3
    return code


if __name__ == "__main__":
    sys.exit(main())
