"""The ``accord`` command: the composition root for operators."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from adapters.logging import configure_logging
from adapters.store import StoreConfigError, store_config
from adapters.wiring import build_accord
from application.errors import StoreUnavailableError
from application.personal_data import MasterKeyError


def _init(args: argparse.Namespace) -> int:
    config = store_config(args.database_url)
    with build_accord(config) as app:
        position = app.log.recorder.max_notification_id() or 0
    print(f"Accord store ready: {config.safe_url} ({config.kind}), log position {position}")
    return 0


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
