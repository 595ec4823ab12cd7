"""The ``sampleplan`` command: ``serve``, ``plan``, ``mix`` and ``report``.

``sampleplan serve`` runs the HTTP service. ``sampleplan plan LABELS_FILE`` reads labels
from a manifest (CSV, JSON Lines, ``.npy``, an ImageFolder path list, one column of a
Parquet or Arrow file, or an ImageFolder folder itself), builds the plan on a service
(``--url``) or locally with the same sampling core, and prints its class table;
``sampleplan plan --source NAME=ds:ID ... --url URL`` (or ``--mixture FILE``) creates a
mixture plan over stored sources and prints each source's share as the service answers it.
``sampleplan mix MIXTURE_FILE`` reads a mixture of sources and prints each source's
requested and realised share, computed locally. ``sampleplan report PLAN_ID`` fetches a
plan's HTML report from a service and writes it to a file or opens it in a browser.
This module holds the parser and ``serve``; ``plan.py``, ``mixtures.py`` and ``report.py``
the other commands, ``_common.py`` what they share.

NOTE [A fast --help]
    Building the parser imports nothing but the standard library: numpy, torch, pyarrow,
    the client and the server's frameworks are imported by the command that needs them,
    so ``sampleplan --help`` answers in a fraction of a second instead of the seconds
    those imports take. The choices are therefore written out (in ``_common.py``); a test holds
    them equal to the core's (``STRATEGIES``, ``ALGORITHMS``).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from sampleplan import __version__
from sampleplan.cli._common import (
    ALGORITHM_CHOICES,
    DEFAULT_URL,
    FORMATS,
    LABEL_REDUCE_CHOICES,
    MIXING_CHOICES,
    STOPPING_CHOICES,
    STRATEGY_CHOICES,
    UNIT_CHOICES,
    CommandError,
    Subparsers,
)
from sampleplan.cli.mixtures import mix_command, parse_source
from sampleplan.cli.plan import plan_command
from sampleplan.cli.report import report_command

__all__ = [
    "ALGORITHM_CHOICES",
    "LABEL_REDUCE_CHOICES",
    "MIXING_CHOICES",
    "STOPPING_CHOICES",
    "STRATEGY_CHOICES",
    "UNIT_CHOICES",
    "CommandError",
    "build_parser",
    "main",
    "parse_source",
    "run_command",
    "serve_command",
]


def build_parser() -> argparse.ArgumentParser:
    """The ``sampleplan`` parser, every subcommand and option with its help."""
    parser = argparse.ArgumentParser(
        prog="sampleplan",
        description="Sampling plans for imbalanced datasets: run the service, or read a "
        "labels file's plan.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}", help="print the version"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the HTTP service (uvicorn)",
        description="Run the service. Settings come from SAMPLEPLAN_* environment variables "
        "(database, limits, tokens, logs); see docs/reference/configuration.md.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes sharing the port (default: $SAMPLEPLAN_WORKERS, else 1); each "
        "has its own epoch cache and metrics: see docs/operations/serving-under-load.md",
    )
    serve.add_argument(
        "--loop",
        default=None,
        choices=["asyncio", "uvloop"],
        help="event loop (default: $SAMPLEPLAN_EVENT_LOOP, else asyncio, whose tail latency "
        "under load was the shorter: see docs/operations/serving-under-load.md)",
    )
    serve.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="least severe log level written (default: $SAMPLEPLAN_LOG_LEVEL, else info)",
    )
    add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """The ``sampleplan`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        if args.workers is not None and args.workers < 1:
            parser.error(f"--workers should be a positive integer, but got {args.workers}")
        serve_command(args)
    else:
        raise SystemExit(run_command(args))


def serve_command(args: argparse.Namespace) -> None:
    import uvicorn

    from sampleplan.service.config import get_settings
    from sampleplan.service.logs import uvicorn_log_config
    from sampleplan.service.server import HTTP_PROTOCOL

    if args.log_level is not None:
        # The app (in this process or in workers) reads its level from the settings.
        os.environ["SAMPLEPLAN_LOG_LEVEL"] = args.log_level
        get_settings.cache_clear()
    settings = get_settings()
    level = settings.log_level
    loop = settings.event_loop if args.loop is None else args.loop
    if loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise SystemExit(
            "sampleplan serve: error: --loop uvloop needs uvloop, which is not installed "
            "(pip install uvloop)"
        )
    extra: dict[str, Any] = {}
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        # uvicorn restarts a worker that does not answer its supervisor's ping within this
        # many seconds (5 by default). A worker imports torch and numba before it can
        # answer: on a busy machine that takes longer, and workers were killed and
        # restarted for ever.
        extra["timeout_worker_healthcheck"] = WORKER_HEALTHCHECK_SECONDS
    uvicorn.run(
        # serve_app: create_app with the garbage collector's start-up freeze (see
        # NOTE [Garbage collection pauses] in service/main.py).
        "sampleplan.service.main:serve_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=settings.workers if args.workers is None else args.workers,
        # Named, not "auto": uvicorn's auto picks uvloop whenever it is importable.
        loop=loop,
        # httptools' parser, with TCP_NODELAY on every connection (NOTE [TCP_NODELAY with
        # --workers] in service/server.py).
        http=HTTP_PROTOCOL,
        log_level=level,
        # The service logs each request itself (with its request id).
        access_log=False,
        log_config=uvicorn_log_config(settings.log_format, level),
        **extra,
    )


#: How long ``sampleplan serve --workers N``'s supervisor waits for a worker's answer.
WORKER_HEALTHCHECK_SECONDS = 60


def add_commands(commands: Subparsers[argparse.ArgumentParser]) -> None:
    """Register ``plan`` and ``report`` on the ``sampleplan`` parser's subcommands."""
    plan = commands.add_parser(
        "plan",
        help="build a plan from a labels file and print its class table",
        description="Read labels from LABELS_FILE, build the plan (on a service with --url, "
        "locally otherwise) and print each class's count, weight, share of the data and of "
        "the draws, draws per epoch and coverage.",
    )
    plan.add_argument(
        "labels_file",
        metavar="LABELS_FILE",
        nargs="?",
        help="CSV, JSON Lines, .npy, a path list, Parquet, Arrow, or an ImageFolder folder "
        "('-': stdin); leave it out for a mixture (--source or --mixture)",
    )
    plan.add_argument(
        "--format", choices=FORMATS, help="the file's format (default: from its extension)"
    )
    plan.add_argument(
        "--label-column",
        "--column",
        dest="column",
        help="label column of a CSV, Parquet or Arrow file, or key of JSON Lines "
        "(default: 'label'); only that column of a Parquet or Arrow file is read",
    )
    plan.add_argument(
        "--label-separator",
        metavar="CHAR",
        help="CSV only: split each label cell on this character into a label set",
    )
    plan.add_argument(
        "--split", help="train/validation split: fractions '0.7,0.3' or lengths '414,178'"
    )
    plan.add_argument("--stratify", action="store_true", help="stratify the split by class (label)")
    plan.add_argument("--split-seed", type=int, default=0, help="seed of the split (default 0)")
    plan.add_argument("--seed", type=int, help="base seed of the streams (default 0)")
    plan.add_argument(
        "--strategy",
        choices=STRATEGY_CHOICES,
        default="inverse_frequency",
        help="how to weight the classes (default inverse_frequency)",
    )
    plan.add_argument("--beta", type=float, help="effective_number's beta (default 0.999)")
    plan.add_argument(
        "--label-reduce",
        choices=LABEL_REDUCE_CHOICES,
        help="label sets: combine a sample's class weights by sum (default), max or mean",
    )
    plan.add_argument(
        "--unlabelled-weight", type=float, help="label sets: the weight of a sample with no label"
    )
    plan.add_argument(
        "--threshold", type=float, help="repeat_factor's frequency threshold (default 0.001)"
    )
    plan.add_argument(
        "--class-weight",
        action="append",
        default=[],
        metavar="CLASS=WEIGHT",
        help="a class's weight for strategy class_weights (repeat for more classes)",
    )
    plan.add_argument(
        "--definition",
        action="append",
        default=[],
        metavar="NAME=VERSION",
        help="a newer definition for the plan, e.g. stratify=stratified-v2 or "
        "weights=weights-v2 (repeat for more; default: the first versions)",
    )
    plan.add_argument(
        "--num-samples", type=int, help="draws per epoch (default: the population size)"
    )
    plan.add_argument("--no-replacement", action="store_true", help="draw without replacement")
    plan.add_argument(
        "--algorithm",
        choices=ALGORITHM_CHOICES,
        default="torch",
        help="torch (bit-identical to WeightedRandomSampler, the default) or hierarchical "
        "(any size, with replacement)",
    )
    plan.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on stderr while reading, parsing and uploading "
        "(default: when stderr is a terminal)",
    )
    plan.add_argument(
        "--url", help="a sampleplan service to create the plan on (default: compute locally)"
    )
    plan.add_argument(
        "--token", default=os.environ.get("SAMPLEPLAN_TOKEN"), help="bearer token for --url"
    )
    plan.add_argument(
        "--json", action="store_true", help="print the plan as JSON instead of a table"
    )
    plan.add_argument(
        "--report", metavar="HTML_FILE", help="also write the plan's HTML report here"
    )

    mixture = plan.add_argument_group(
        "mixtures",
        "a plan over several sources (on a service: --url), instead of LABELS_FILE; see "
        "docs/how-to/mixtures.md",
    )
    mixture.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=ds:ID[:WEIGHT][:ORDER]",
        help="a source: a stored dataset (ds:DATASET_ID) or plan (plan:PLAN_ID), its weight "
        "and its order (sequential, reshuffled or shuffle_seed=S), e.g. web=ds:3f2a...:7 or "
        "code=ds:9bc1...:2:shuffle_seed=11; repeat for every source, in order",
    )
    mixture.add_argument(
        "--mixture",
        metavar="MIXTURE_FILE",
        help="the mixture as JSON, as 'sampleplan mix' reads it, each source naming its "
        "'dataset_id' or 'plan_id'",
    )
    mixture.add_argument(
        "--mixing",
        choices=MIXING_CHOICES,
        help="the mixing algorithm (default mixture-v1)",
    )
    mixture.add_argument(
        "--proportions",
        metavar="weights|sizes|T",
        help="the sources' proportions: by their weights (the default), their sizes, or a "
        "temperature T > 0 (size ** (1 / T), normalised)",
    )
    mixture.add_argument(
        "--stopping", choices=STOPPING_CHOICES, help="hf-interleave: where an epoch ends"
    )
    mixture.add_argument(
        "--unit", choices=UNIT_CHOICES, help="mixture-v1: mix samples (default) or tokens"
    )
    mixture.add_argument("--block", type=int, help="mixture-v1: the window (default 1024)")

    mix = commands.add_parser(
        "mix",
        help="read a mixture file and print each source's share",
        description="Read a mixture file (JSON: 'sources', 'mixing', 'num_samples', 'seed'; "
        "each source gives its 'length', or a data 'file' whose rows are its samples and "
        "whose 'length_column' holds their token counts) and print each source's requested "
        "and realised share of an epoch, its share of tokens where known, and how many "
        "passes over it the epoch makes (a warning past 4). Computed locally; see "
        "docs/how-to/mixtures.md.",
    )
    mix.add_argument("mixture_file", metavar="MIXTURE_FILE", help="the mixture, as JSON")
    mix.add_argument("--epoch", type=int, default=0, help="the epoch to describe (default 0)")
    mix.add_argument("--json", action="store_true", help="print JSON instead of a table")

    report = commands.add_parser(
        "report",
        help="write or open a plan's HTML report",
        description="Fetch the HTML report of PLAN_ID from a service; write it to --output, "
        "or open it in a browser.",
    )
    report.add_argument("plan_id", metavar="PLAN_ID", help="the plan's id")
    report.add_argument(
        "--url",
        default=os.environ.get("SAMPLEPLAN_URL", DEFAULT_URL),
        help=f"the service (default: $SAMPLEPLAN_URL or {DEFAULT_URL})",
    )
    report.add_argument("--token", default=os.environ.get("SAMPLEPLAN_TOKEN"), help="bearer token")
    report.add_argument(
        "-o", "--output", help="write the HTML here ('-': stdout) instead of opening it"
    )


def run_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run ``plan`` or ``report``; print errors in one line; return the exit status."""
    from sampleplan.client import SamplePlanError
    from sampleplan.core.errors import SamplingError

    out = out or sys.stdout
    try:
        if args.command == "plan":
            plan_command(args, out)
        elif args.command == "report":
            report_command(args, out)
        elif args.command == "mix":
            mix_command(args, out)
        else:  # pragma: no cover - argparse only hands over registered commands
            raise CommandError(f"unknown command {args.command!r}")
    except (CommandError, SamplingError, SamplePlanError) as exc:
        print(f"sampleplan {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0
