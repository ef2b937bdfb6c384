"""`accord export`, `accord verify --export` and `accord keys rotate`: the auditor's and
the key custodian's commands (registered by ``adapters.cli``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from adapters.export import ExportState, export, resume_point, verify_export
from adapters.master_key import write_master_key
from adapters.store import store_config
from adapters.wiring import build_accord
from application.personal_data import MasterKey

INTERRUPTED = 130


def positive(text: str) -> int:
    """An argument that counts something (a batch, a scale): a whole number, at least 1.

    A batch size of 0 read nothing, so a rebuild never reached the head and
    ran for ever; a negative one read without a limit."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


@contextlib.contextmanager
def interruptible() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set an event the work checks between batches (never mid-write)."""
    stop = threading.Event()

    def handle(_: int, __: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def progress_bar(description: str) -> Progress:
    """Position reached out of the head, with the rate and time left, on stderr."""
    return Progress(
        TextColumn(f"[bold]{description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
        console=None,
        redirect_stdout=False,
        redirect_stderr=False,
        expand=False,
    )


def export_command(args: argparse.Namespace) -> int:
    config = store_config(args.database_url)
    output: Path | None = args.output
    start = resume_point(output) if output is not None else ExportState(0, "0" * 64, 0)
    with build_accord(config) as app, interruptible() as stop:
        head = app.log.recorder.max_notification_id() or 0
        bar = progress_bar("export")
        bar.console.file = sys.stderr
        with (
            bar,
            (
                output.open("a", encoding="utf-8") if output else contextlib.nullcontext(sys.stdout)
            ) as out,
        ):
            task = bar.add_task("export", total=head, completed=start.position, rate="")

            def advance(position: int, _: int) -> None:
                elapsed = bar.tasks[task].elapsed or 1e-9
                rate = (position - start.position) / elapsed
                bar.update(task, completed=position, rate=f"{rate:,.0f} events/s")

            state = export(
                app.log,
                out,
                start,
                include_pii=args.include_pii,
                batch_size=args.batch_size,
                stop=stop,
                progress=advance,
            )
    summary = {"position": state.position, "hash": state.hash, "lines": state.lines}
    print(json.dumps(summary), file=sys.stderr)
    if stop.is_set() and state.position < head:
        print(
            f"accord: export interrupted at position {state.position}; run the same command "
            "again to resume",
            file=sys.stderr,
        )
        return INTERRUPTED
    return 0


def verify_export_command(args: argparse.Namespace) -> int:
    try:
        result = verify_export(args.export, position=args.position, expected_hash=args.hash)
    except (OSError, ValueError) as error:
        print(f"accord: cannot verify {args.export}: {error}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "ok": result.ok,
                "position": result.position,
                "hash": result.hash,
                "first_mismatch_position": result.first_mismatch_position,
                "lines": result.lines,
            }
        )
    )
    return 0 if result.ok else 1


def rotate_command(args: argparse.Namespace) -> int:
    config = store_config(args.database_url)
    target: Path = args.new_key_file
    if target.exists():
        print(f"accord: {target} exists; name a new file for the new key", file=sys.stderr)
        return 2
    new_key = MasterKey.generate()
    with build_accord(config) as app:
        old_id = app.keys.master_key_id
        write_master_key(target, new_key)
        try:
            moved = app.keys.rotate(new_key)
        except BaseException:
            target.unlink(missing_ok=True)  # nothing was re-wrapped: the new key is useless
            raise
    print(
        json.dumps({"rewrapped": moved, "from_key": old_id, "to_key": new_key.key_id}),
    )
    print(
        f"accord: every data key is now wrapped by the key in {target}. Restart every server "
        f"and worker with ACCORD_MASTER_KEY_FILE={target}, then destroy the old key.",
        file=sys.stderr,
    )
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    exporter = commands.add_parser(
        "export",
        help="the log as JSON lines for auditors (personal data redacted unless --include-pii)",
    )
    exporter.add_argument(
        "--output",
        type=Path,
        help="file to write (resumed from its last complete line); default stdout",
    )
    exporter.add_argument(
        "--include-pii",
        action="store_true",
        help="reveal personal data (needs the master key this process is configured with)",
    )
    exporter.add_argument("--batch-size", type=positive, default=2000)
    exporter.set_defaults(handler=export_command)

    keys = commands.add_parser("keys", help="master key management")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    rotate = key_commands.add_parser(
        "rotate", help="re-wrap every customer's data key under a new master key"
    )
    rotate.add_argument(
        "--new-key-file", type=Path, required=True, help="where to write the new key (0600)"
    )
    rotate.set_defaults(handler=rotate_command)
