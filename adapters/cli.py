"""The ``accord`` command: the composition root for operators and auditors."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

from adapters.grpc.server import ServerOptions, start_server
from adapters.logging import configure_logging
from adapters.store import StoreConfig, StoreConfigError, store_config
from adapters.wiring import build_accord, build_read_models
from application.errors import StoreUnavailableError
from application.personal_data import MasterKeyError
from application.service import Accord
from projections import audit_trail
from projections.catalog import all_projections
from projections.runner import Progress


def _open(args: argparse.Namespace) -> tuple[StoreConfig, Accord]:
    config = store_config(args.database_url)
    return config, build_accord(config)


def _init(args: argparse.Namespace) -> int:
    config, app = _open(args)
    with app:
        position = app.log.recorder.max_notification_id() or 0
    print(f"Accord store ready: {config.safe_url} ({config.kind}), log position {position}")
    return 0


def _stop_on_signals() -> threading.Event:
    """SIGTERM and SIGINT finish the batch in hand (one transaction) and stop cleanly."""
    stop = threading.Event()

    def handle(signum: int, _: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def _serve(args: argparse.Namespace) -> int:
    host = args.host or os.environ.get("ACCORD_HOST") or "127.0.0.1"
    port = args.port if args.port is not None else int(os.environ.get("ACCORD_PORT", "50051"))
    if host not in LOOPBACK:
        print(
            f"accord: refusing to listen on {host}: no tokens are configured, so every caller "
            "would be an administrator; listen on 127.0.0.1 or configure tokens",
            file=sys.stderr,
        )
        return 2
    config, app = _open(args)
    with app:
        views = build_read_models(app, config)
        if not args.no_projections:
            views.start()
        running = start_server(ServerOptions(host=host, port=port), [], [])
        print(
            f"Accord listening on {host}:{running.port} (store: {config.safe_url}; "
            "no tokens configured: loopback only, every caller is a local admin)",
            flush=True,
        )
        stop = _stop_on_signals()
        stop.wait()
        running.stop(ServerOptions().grace_seconds)
        views.stop()
    print("Accord stopped", flush=True)
    return 0


def _project(args: argparse.Namespace) -> int:
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
        stop = _stop_on_signals()
        print(f"accord project: following {config.safe_url}", file=sys.stderr, flush=True)
        views.work(stop)
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    config, app = _open(args)
    names = {p.name for p in all_projections()}
    if args.name not in names:
        print(f"accord: no read model {args.name!r}; choose from {sorted(names)}", file=sys.stderr)
        return 2
    with app:
        views = build_read_models(app, config, batch_size=args.batch_size)
        progress = Progress(args.name)
        done = threading.Event()

        def report() -> None:
            while not done.wait(1.0):
                rate = progress.events / max(time.monotonic() - progress.started, 1e-9)
                print(
                    f"rebuilding {args.name}: {progress.position}/{progress.head} "
                    f"({rate:,.0f} events/s)",
                    file=sys.stderr,
                    flush=True,
                )

        reporter = threading.Thread(target=report, daemon=True)
        reporter.start()
        try:
            generation = views.runner.rebuild(args.name, progress)
        finally:
            done.set()
        print(
            json.dumps({"name": args.name, "generation": generation, "position": progress.position})
        )
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
    config, app = _open(args)
    with app:
        views = build_read_models(app, config)
        views.runner.catch_up()
        with views.read(audit_trail.NAME) as reader:
            result = audit_trail.verify(app.log.recorder, reader, args.position, args.hash)
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
    serve.add_argument(
        "--no-projections",
        action="store_true",
        help="do not run the read models in this process (run `accord project` instead)",
    )
    serve.set_defaults(handler=_serve)

    project = commands.add_parser(
        "project", help="keep the read models current (one active worker per read model)"
    )
    project.add_argument("--once", action="store_true", help="catch up, then exit")
    project.add_argument("--batch-size", type=int, default=500)
    project.set_defaults(handler=_project)

    rebuild = commands.add_parser(
        "rebuild", help="rebuild a read model from position 0 beside the serving copy"
    )
    rebuild.add_argument("name")
    rebuild.add_argument("--batch-size", type=int, default=2000)
    rebuild.set_defaults(handler=_rebuild)

    digest = commands.add_parser("digest", help="print the audit chain's (position, hash)")
    digest.set_defaults(handler=_digest)

    verify = commands.add_parser(
        "verify", help="check the log up to a digest given earlier (exit 1 if it changed)"
    )
    verify.add_argument("--position", type=int, required=True)
    verify.add_argument("--hash", required=True)
    verify.set_defaults(handler=_verify)
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
