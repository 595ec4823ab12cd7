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

NOTE [A fast --help]
    Building the parser imports nothing but the standard library: numpy, torch, pyarrow,
    the client and the server's frameworks are imported by the command that needs them,
    so ``sampleplan --help`` answers in a fraction of a second instead of the seconds
    those imports take. The choices below are therefore written out here; a test holds
    them equal to the core's (``STRATEGIES``, ``ALGORITHMS``).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import sys
import tempfile
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from sampleplan import __version__
from sampleplan.service.progress import Progress

if TYPE_CHECKING:
    from sampleplan.core.labels import Labels
    from sampleplan.core.labelsets import LabelSets

#: Where ``--url`` points when neither it nor ``SAMPLEPLAN_URL`` is given (``report`` only).
DEFAULT_URL = "http://127.0.0.1:8000"

#: Manifest formats by file extension; anything else needs ``--format``.
FORMATS_BY_SUFFIX = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".npy": "npy",
    ".npz": "npz",
    ".txt": "paths",
    ".lst": "paths",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
FORMATS = ("csv", "jsonl", "npy", "npz", "paths", "parquet", "arrow", "folder")

#: sampleplan.core.weighting.STRATEGIES but sample_weights, and the names of
#: sampleplan.core.algorithms.ALGORITHMS (NOTE [A fast --help]).
STRATEGY_CHOICES = (
    "inverse_frequency",
    "inverse_sqrt_frequency",
    "effective_number",
    "uniform",
    "class_weights",
    "repeat_factor",
)
ALGORITHM_CHOICES = ("torch", "hierarchical")
#: sampleplan.core.mixtures.spec's MIXING_NAMES, stoppings and units (NOTE [A fast --help]).
MIXING_CHOICES = ("mixture-v1", "hf-interleave", "megatron-blend")
STOPPING_CHOICES = ("first_exhausted", "all_exhausted")
UNIT_CHOICES = ("samples", "tokens")
#: sampleplan.core.labelsets.LABEL_REDUCES (NOTE [A fast --help]).
LABEL_REDUCE_CHOICES = ("sum", "max", "mean")

#: Repeats per drawn sample above which the table flags a class (as the report does).
REPEAT_WARNING = 3.0

Subparsers = argparse._SubParsersAction  # the type argparse gives add_subparsers' result


class CommandError(Exception):
    """A problem to report in one line and exit with status 1."""


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


# -- plan -----------------------------------------------------------------------------------


def _read_bytes(path: str, progress: Progress) -> bytes:
    """The file's bytes, read in pieces so that the bar moves on a large file."""
    if path == "-":
        with progress.stage("reading standard input"):
            return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        total = os.fstat(handle.fileno()).st_size
        chunks = []
        with progress.stage(f"reading {path}", total=total) as stage:
            while chunk := handle.read(1 << 22):
                chunks.append(chunk)
                stage.advance(len(chunk))
    return b"".join(chunks)


def read_labels(
    path: str,
    fmt: str | None,
    column: str | None,
    progress: Progress | None = None,
    label_separator: str | None = None,
) -> Labels | LabelSets:
    """Labels from a manifest file (``-``: standard input), parsed by ``sampleplan.core.manifests``,
    or from an ImageFolder folder, listed by ``client.image_folder_targets``."""
    from sampleplan.core import manifests
    from sampleplan.core.errors import InputNames

    progress = progress or Progress(enabled=False)
    if fmt is None and path != "-" and Path(path).is_dir():
        fmt = "folder"
    if fmt is None:
        if path == "-":
            raise CommandError("reading standard input needs --format")
        fmt = FORMATS_BY_SUFFIX.get(Path(path).suffix.lower())
        if fmt is None:
            raise CommandError(
                f"cannot tell the format of {path!r} from its extension; give --format "
                f"({', '.join(FORMATS)})"
            )
    if column is not None and fmt in ("paths", "folder"):
        raise CommandError("--column applies to csv and jsonl files, not to path lists")
    if label_separator is not None and fmt != "csv":
        raise CommandError("--label-separator applies to csv files only")
    if fmt == "folder":
        return _folder_labels(path, progress)
    if fmt in ("parquet", "arrow"):
        with progress.stage(f"reading the label column of {path}"):
            return _table_labels(path, fmt, column or "label")
    try:
        data = _read_bytes(path, progress)
    except OSError as exc:
        raise CommandError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
    with progress.stage(f"parsing {fmt}"):
        names = InputNames(source=repr(path), column_option="--column")
        if fmt == "npy":
            return manifests.labels_from_npy(data, names=names)
        if fmt == "npz":
            return manifests.label_sets_from_npz(data, names=names)
        text = manifests.decode_text(data, None, f"file {path!r}")
        if fmt == "csv":
            return manifests.labels_from_csv(text, column or "label", label_separator, names=names)
        if fmt == "jsonl":
            return manifests.labels_from_jsonl(text, column or "label", names=names)
        return manifests.labels_from_paths(text)


def _folder_labels(path: str, progress: Progress) -> Labels:
    """An ImageFolder folder's labels: class names in ImageFolder's sample order."""
    from sampleplan.client import image_folder_targets
    from sampleplan.core.labels import labels_from_strings

    with progress.stage(f"listing {path}"):
        try:
            found = image_folder_targets(path)
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read the ImageFolder {path!r}: {exc}") from exc
    return labels_from_strings([found.classes[t] for t in found.targets])


def _table_labels(path: str, fmt: str, column: str) -> Labels | LabelSets:
    """Labels from one column of a Parquet or Arrow file, memory-mapped: only it is read."""
    import pyarrow as pa

    from sampleplan.core.errors import InputNames
    from sampleplan.core.tables import labels_from_arrow, read_label_column

    table_format: Literal["parquet", "arrow"] = "parquet" if fmt == "parquet" else "arrow"
    try:
        source = pa.BufferReader(sys.stdin.buffer.read()) if path == "-" else pa.memory_map(path)
    except OSError as exc:
        raise CommandError(f"cannot read {path!r}: {exc.strerror or exc}") from exc
    names = InputNames(source=repr(path), column_option="--label-column")
    with source:
        return labels_from_arrow(read_label_column(source, table_format, column, names=names))


def parse_split(text: str | None, seed: int) -> dict[str, Any] | None:
    """``"0.7,0.3"`` -> fractions, ``"414,178"`` -> lengths (as the plan request takes them)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if all(p.isdigit() for p in parts):
            return {"lengths": [int(p) for p in parts], "seed": seed}
        return {"fractions": [float(p) for p in parts], "seed": seed}
    except ValueError as exc:
        raise CommandError(
            f"--split takes numbers separated by commas, e.g. 0.7,0.3; got {text!r}"
        ) from exc


def parse_class_weights(items: Sequence[str]) -> dict[str, float] | None:
    if not items:
        return None
    weights: dict[str, float] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            weights[name] = float(value)
        except ValueError as exc:
            raise CommandError(
                f"--class-weight takes CLASS=WEIGHT, e.g. cat=2.0; got {item!r}"
            ) from exc
    return weights


def parse_definitions(items: list[str]) -> dict[str, str] | None:
    """``--definition NAME=VERSION`` options as the request's ``definitions``."""
    if not items:
        return None
    definitions: dict[str, str] = {}
    for item in items:
        name, sep, version = item.partition("=")
        if not sep or not name or not version:
            raise CommandError(
                f"--definition takes NAME=VERSION, e.g. stratify=stratified-v2; got {item!r}"
            )
        definitions[name] = version
    return definitions


def parse_source(text: str) -> dict[str, Any]:
    """``--source NAME=ds:ID[:WEIGHT][:ORDER]`` (or ``plan:ID``) as a source of the request.

    ``ORDER`` is ``sequential``, ``reshuffled`` or ``shuffle_seed=S``; the weight and the
    order may come in either order after the id.
    """
    usage = (
        "--source takes NAME=ds:DATASET_ID[:WEIGHT][:ORDER] or NAME=plan:PLAN_ID[:WEIGHT], "
        "ORDER being sequential, reshuffled or shuffle_seed=S (e.g. web=ds:3f2a...:7)"
    )
    name, sep, rest = text.partition("=")
    parts = rest.split(":")
    if not sep or not name or len(parts) < 2 or parts[0] not in ("ds", "plan") or not parts[1]:
        raise CommandError(f"{usage}; got {text!r}")
    source: dict[str, Any] = {"name": name}
    source["dataset_id" if parts[0] == "ds" else "plan_id"] = parts[1]
    for part in parts[2:]:
        if part in ("sequential", "reshuffled") and "order" not in source:
            source["order"] = part
        elif part.startswith("shuffle_seed=") and "order" not in source:
            seed = part.removeprefix("shuffle_seed=")
            if not seed.isdigit():
                raise CommandError(f"{usage}; got {text!r} (shuffle_seed takes an integer)")
            source["order"] = {"shuffle_seed": int(seed)}
        elif part and "weight" not in source:
            try:
                weight = float(part)
            except ValueError:
                raise CommandError(f"{usage}; got {text!r} (what is {part!r}?)") from None
            source["weight"] = int(weight) if weight.is_integer() and "." not in part else weight
        else:
            raise CommandError(f"{usage}; got {text!r} (what is {part!r}?)")
    return source


def parse_proportions(text: str | None) -> Any:
    """``--proportions``: ``weights``, ``sizes`` or a temperature (a number)."""
    if text is None or text in ("weights", "sizes"):
        return text
    try:
        return {"temperature": float(text.removeprefix("temperature="))}
    except ValueError:
        raise CommandError(
            f"--proportions takes weights, sizes or a temperature (a number > 0); got {text!r}"
        ) from None


#: What a ``--mixture`` file may hold, and each of its sources.
_PLAN_SOURCE_KEYS = {"name", "dataset_id", "plan_id", "weight", "order"}


#: The fields of a mixture file (``sampleplan plan --mixture``, ``sampleplan mix``).
_MIXTURE_KEYS = frozenset({"sources", "mixing", "num_samples", "seed"})


def read_mixture_file(path: str) -> dict[str, Any]:
    """A mixture file: a JSON object with a ``sources`` list and no field but those of
    :data:`_MIXTURE_KEYS`."""
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read the mixture file {path!r}: {exc}") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("sources"), list):
        raise CommandError("a mixture file is a JSON object with a 'sources' list")
    unknown = set(spec) - _MIXTURE_KEYS
    if unknown:
        raise CommandError(f"unknown mixture fields: {', '.join(sorted(unknown))}")
    return spec


def mixture_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The request of a mixture plan (``sources``, ``mixing``, ``num_samples``, ``seed``)
    from ``--source`` options or a ``--mixture`` file, and the mixing options."""
    if args.source and args.mixture:
        raise CommandError("give the sources with --source or in a --mixture file, not both")
    fields: dict[str, Any]
    if args.mixture:
        spec = read_mixture_file(args.mixture)
        for item in spec["sources"]:
            if not isinstance(item, dict):
                raise CommandError("every source is a JSON object")
            bad = set(item) - _PLAN_SOURCE_KEYS
            if bad:
                raise CommandError(
                    f"unknown source fields: {', '.join(sorted(bad))} (a source on a service "
                    "names its 'dataset_id' or 'plan_id')"
                )
        fields = dict(spec)
    else:
        fields = {"sources": [parse_source(item) for item in args.source]}
    mixing = dict(fields.get("mixing") or {})
    for name in ("mixing", "stopping", "unit", "block"):
        value = getattr(args, name)
        if value is not None:
            mixing["algorithm" if name == "mixing" else name] = value
    proportions = parse_proportions(args.proportions)
    if proportions is not None:
        mixing["proportions"] = proportions
    if mixing:
        fields["mixing"] = mixing
    if args.num_samples is not None:
        fields["num_samples"] = args.num_samples
    if args.seed is not None or "seed" not in fields:
        fields["seed"] = 0 if args.seed is None else args.seed
    if args.labels_file is not None:
        raise CommandError(
            "a mixture's sources are stored datasets or plans: leave LABELS_FILE out "
            "(upload each source's labels first, e.g. with 'sampleplan plan FILE --url URL "
            "--json')"
        )
    if not args.url:
        raise CommandError(
            "a mixture's sources are stored on a service: give its --url (or compute a "
            "mixture of local files with 'sampleplan mix')"
        )
    return fields


def plan_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The plan request's fields (as JSON would carry them) from the command line."""
    fields: dict[str, Any] = {
        "strategy": args.strategy,
        "seed": 0 if args.seed is None else args.seed,
        "replacement": not args.no_replacement,
        "algorithm": args.algorithm,
    }
    class_weights = parse_class_weights(args.class_weight)
    if class_weights is not None:
        if args.strategy != "class_weights":
            raise CommandError("--class-weight needs --strategy class_weights")
        fields["class_weights"] = class_weights
    if args.beta is not None:
        fields["beta"] = args.beta
    split = parse_split(args.split, args.split_seed)
    if split is not None:
        if args.stratify:
            split["stratify"] = True
        fields["split"] = split
    elif args.stratify:
        raise CommandError("--stratify needs --split")
    for name in ("label_reduce", "unlabelled_weight", "threshold"):
        if getattr(args, name) is not None:
            fields[name] = getattr(args, name)
    if args.num_samples is not None:
        fields["num_samples"] = args.num_samples
    definitions = parse_definitions(args.definition)
    if definitions is not None:
        fields["definitions"] = definitions
    return fields


def local_plan(labels: Labels | LabelSets, fields: dict[str, Any]) -> dict[str, Any]:
    """The plan as ``GET /v1/plans/{id}`` would answer it, computed here with the core."""
    from sampleplan.core.config import PlanConfig
    from sampleplan.core.splitting import split_from_canonical
    from sampleplan.service.api.views import plan_out
    from sampleplan.service.catalog import build_plan

    config = PlanConfig(
        strategy=fields["strategy"],
        beta=fields.get("beta"),
        class_weights=fields.get("class_weights"),
        # parse_split writes the split as the canonical config does.
        split=split_from_canonical(fields.get("split")),
        num_samples=fields.get("num_samples"),
        replacement=fields["replacement"],
        seed=fields["seed"],
        algorithm=fields["algorithm"],
        label_reduce=fields.get("label_reduce"),
        unlabelled_weight=fields.get("unlabelled_weight"),
        threshold=fields.get("threshold"),
        definitions=fields.get("definitions"),
    )
    body: dict[str, Any] = plan_out(build_plan(labels, config)).model_dump(
        mode="json", by_alias=True
    )
    return body


def remote_plan(
    url: str,
    token: str | None,
    labels: Labels | LabelSets,
    fields: dict[str, Any],
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Upload the dataset (in binary), create the plan on it at ``url``; the plan's JSON."""
    from sampleplan.client import SamplePlanClient

    progress = progress or Progress(enabled=False)
    with SamplePlanClient(url, token=token, retries=1) as api:
        with progress.stage(f"uploading {labels.size:,} labels to {url}"):
            dataset = api.create_dataset(_upload_form(labels))
        with progress.stage("creating the plan"):
            raw: dict[str, Any] = api.create_plan(dataset_id=dataset.id, **fields).raw
        return raw


def _upload_form(labels: Labels | LabelSets) -> Any:
    """The labels in the form the client sends cheapest: integers, or a dictionary array
    of class names (each name once, a code per sample); label sets as lists (JSON)."""
    import numpy as np
    import pyarrow as pa

    from sampleplan.core.labelsets import LabelSets

    if isinstance(labels, LabelSets):
        return labels.values()
    if labels.kind == "int":
        return np.asarray(labels.classes, dtype=np.int64)[labels.codes]
    return pa.DictionaryArray.from_arrays(pa.array(labels.codes), pa.array(list(labels.classes)))


def plan_command(args: argparse.Namespace, out: TextIO) -> None:
    if args.source or args.mixture:
        mixture_plan_command(args, out)
        return
    if args.labels_file is None:
        raise CommandError("give a LABELS_FILE, or a mixture's sources (--source or --mixture)")
    progress = Progress(enabled=args.progress)
    # numpy, torch and numba take seconds to import on a busy machine: say so, rather than
    # sit silent before the first step.
    with progress.stage("loading the sampling core"):
        if args.url:
            import sampleplan.client
        else:
            import sampleplan.service.api.views
            import sampleplan.service.catalog  # noqa: F401
    labels = read_labels(args.labels_file, args.format, args.column, progress, args.label_separator)
    fields = plan_fields(args)
    if args.url:
        plan = remote_plan(args.url, args.token, labels, fields, progress)
        source = f"created on {args.url}"
    else:
        with progress.stage("computing the plan"):
            plan = local_plan(labels, fields)
        source = "computed locally"
    if args.report:
        write_local_report(plan, args.report)
    if args.json:
        json.dump(plan, out, indent=2)
        out.write("\n")
        return
    out.write(format_plan(plan, dataset_size=labels.size, source=source))
    if args.report:
        out.write(f"\nreport written to {args.report}\n")


def mixture_plan_command(args: argparse.Namespace, out: TextIO) -> None:
    """``sampleplan plan --source ...`` / ``--mixture FILE``: a mixture plan on a service."""
    fields = mixture_fields(args)
    if args.report:
        raise CommandError(
            "--report writes a local report; a mixture's is the service's: "
            "sampleplan report PLAN_ID --url URL"
        )
    from sampleplan.client import SamplePlanClient

    with SamplePlanClient(args.url, token=args.token, retries=1) as api:
        plan: dict[str, Any] = api.create_plan(**fields).raw
    if args.json:
        json.dump(plan, out, indent=2)
        out.write("\n")
        return
    out.write(format_mixture_plan(plan, source=f"created on {args.url}"))


def format_mixture_plan(plan: dict[str, Any], *, source: str = "") -> str:
    """A mixture plan's sources as aligned text: requested and realised shares (of samples,
    and of tokens where known), draws and passes per source, and the warnings."""
    config = plan["config"]
    mixing = config["mixing"]
    proportions = mixing["proportions"]
    if isinstance(proportions, dict):
        proportions = f"temperature {proportions['temperature']:g}"
    options = ", ".join(f"{k} {mixing[k]}" for k in ("stopping", "unit", "block") if k in mixing)
    head = [
        f"plan {plan['id']}" + (f"  ({source})" if source else ""),
        f"mixture of {len(plan['sources'])} sources ({plan['size']:,} samples in all); "
        f"epoch {plan.get('epoch', 0)} draws {plan['num_samples']:,}; mixing "
        f"{mixing['algorithm']} by {proportions}"
        + (f" ({options})" if options else "")
        + f", seed {config['seed']}",
        "",
    ]
    tokens = any(row.get("realised_token_share") is not None for row in plan["sources"])
    columns = ["source", "from", "length", "requested", "realised", "samples", "passes"]
    if tokens:
        columns.insert(5, "tokens")
    rows = []
    for row in plan["sources"]:
        origin = f"ds:{row['dataset_id'][:12]}" if row.get("dataset_id") else ""
        if row.get("plan_id"):
            origin = f"plan:{row['plan_id'][:12]}"
        cells = [
            str(row["name"]),
            origin,
            f"{row['length']:,}",
            _pct(row["requested_share"]),
            _pct(row["realised_share"]),
            f"{row['samples']:,}",
            _num(row["passes"]),
        ]
        if tokens:
            cells.insert(5, _pct(row.get("realised_token_share")))
        rows.append(cells)
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        first = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1])]
        rest = (c.rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True))
        return "  ".join([*first, *rest]).rstrip()

    body = [line(columns), line(["-" * w for w in widths]), *map(line, rows)]
    notes = [""]
    if tokens:
        notes.append("requested: of tokens (unit tokens); realised: of samples; tokens: of tokens")
    notes += [f"warning: {w}" for w in plan.get("warnings") or []]
    return "\n".join(head + body + notes).rstrip("\n") + "\n"


def write_local_report(plan: dict[str, Any], path: str) -> None:
    from sampleplan.service.api.report import render_report
    from sampleplan.service.api.schemas import PlanOut

    html = render_report(PlanOut.model_validate(plan))
    try:
        Path(path).write_text(html, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {path!r}: {exc.strerror or exc}") from exc


def _weight(value: float | None, strategy: str) -> str:
    if value is None:
        return "per sample" if strategy == "sample_weights" else "-"
    return f"{value:.6g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_plan(plan: dict[str, Any], *, dataset_size: int | None = None, source: str = "") -> str:
    """A plan's class table as aligned text, with its coverage and any warning."""
    config = plan["config"]
    split = config.get("split")
    population = f"{plan['population_size']:,} samples"
    if split:
        parts = split.get("fractions") or split.get("lengths")
        population += f" (the training part of split {parts}, split seed {split['seed']})"
    head = [
        f"plan {plan['id']}" + (f"  ({source})" if source else ""),
        (f"{dataset_size:,} labels; " if dataset_size is not None else "")
        + f"population {population}; {plan['num_samples']:,} draws per epoch "
        + ("with" if config["replacement"] else "without")
        + f" replacement; strategy {config['strategy']}, seed {config['seed']}, "
        + f"algorithm {config['algorithm']}",
        "",
    ]
    columns = [
        "class",
        "count",
        "weight",
        "data share",
        "draw share",
        "draws/epoch",
        "distinct/epoch",
        "coverage",
        "repeats",
    ]
    rows = [
        [
            str(row["class"]),
            f"{row['count']:,}",
            _weight(row["class_weight"], config["strategy"]),
            _pct(row["data_share"]),
            _pct(row["expected_share"]),
            _num(row["expected_draws"], 1),
            _num(row["expected_distinct_samples"], 1),
            _pct(row["expected_coverage"]),
            _num(row["mean_repeats_per_drawn_sample"]),
        ]
        for row in plan["classes"]
    ]
    cov = plan["epoch_coverage"]
    total = [
        "all",
        f"{plan['population_size']:,}",
        "",
        "100.0%",
        "100.0%",
        f"{plan['num_samples']:,}",
        _num(cov["expected_distinct_samples"], 1),
        _pct(cov["expected_coverage"]),
        _num(cov["mean_repeats_per_drawn_sample"]),
    ]
    widths = [max(len(r[i]) for r in [columns, *rows, total]) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    body = [line(columns), line(["-" * w for w in widths]), *map(line, rows), line(total)]
    notes = [
        "",
        f"expected distinct samples per epoch: {_num(cov['expected_distinct_samples'], 1)} of "
        f"{plan['population_size']:,} ({_pct(cov['expected_coverage'])})"
        + ("" if cov["exact"] else " (approximate: drawn without replacement)"),
    ]
    page = plan.get("classes_page")
    if page:
        notes.append(
            f"the table shows the first {page['limit']:,} of {page['total']:,} classes; "
            f"GET {page['next']} pages through the rest"
        )
    for row in plan["classes"]:
        repeats = row["mean_repeats_per_drawn_sample"]
        if repeats is not None and repeats > REPEAT_WARNING:
            notes.append(
                f"warning: class {row['class']}: each drawn sample is seen {repeats:.1f} times per "
                f"epoch on average ({row['count']:,} sample{'' if row['count'] == 1 else 's'}, "
                f"{row['expected_draws']:.1f} draws)"
            )
    return "\n".join(head + body + notes) + "\n"


# -- report ---------------------------------------------------------------------------------


def report_command(args: argparse.Namespace, out: TextIO) -> None:
    from sampleplan.client import SamplePlanClient

    with SamplePlanClient(args.url, token=args.token, retries=1) as api:
        html = api.request("GET", f"/v1/plans/{args.plan_id}/report").text
    if args.output == "-":
        out.write(html)
        return
    if args.output:
        path = Path(args.output)
    else:
        handle, name = tempfile.mkstemp(prefix=f"sampleplan-{args.plan_id[:12]}-", suffix=".html")
        os.close(handle)
        path = Path(name)
    try:
        path.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
    if args.output:
        out.write(f"report written to {path}\n")
        return
    opened = webbrowser.open(path.resolve().as_uri())
    out.write(f"report written to {path}" + (" and opened in a browser\n" if opened else "\n"))


# -- mix ------------------------------------------------------------------------------------

_SOURCE_KEYS = {"name", "length", "file", "format", "length_column", "weight", "order"}


def mix_command(args: argparse.Namespace, out: TextIO) -> None:
    """``sampleplan mix``: each source's share of an epoch of a mixture file's stream."""
    from sampleplan.core.mixtures import (
        Mixture,
        mixing_from_json,
        mixture_drawer,
        mixture_shares,
    )
    from sampleplan.core.mixtures.spec import MixtureSource
    from sampleplan.core.versions import mixture_versions

    spec = read_mixture_file(args.mixture_file)
    base = Path(args.mixture_file).parent
    sources = []
    for item in spec["sources"]:
        if not isinstance(item, dict):
            raise CommandError("every source is a JSON object")
        bad = set(item) - _SOURCE_KEYS
        if bad:
            raise CommandError(f"unknown source fields: {', '.join(sorted(bad))}")
        length, tokens = _source_rows(item, base)
        source = MixtureSource.from_json(
            {k: v for k, v in item.items() if k in ("name", "weight", "order")}, length, tokens
        )
        sources.append(source)
    if args.epoch < 0:
        raise CommandError(f"--epoch should be >= 0, got {args.epoch}")
    seed, num_samples = spec.get("seed", 0), spec.get("num_samples")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise CommandError(f"'seed' should be an integer, got {seed!r}")
    if num_samples is not None and (
        isinstance(num_samples, bool) or not isinstance(num_samples, int)
    ):
        raise CommandError(f"'num_samples' should be an integer, got {num_samples!r}")
    mixing = spec.get("mixing")
    if mixing is not None and not isinstance(mixing, dict):
        raise CommandError("'mixing' should be a JSON object")
    mixture = Mixture(tuple(sources), mixing_from_json(mixing), seed=seed, num_samples=num_samples)
    drawer = mixture_drawer(mixture)
    shares = mixture_shares(drawer, args.epoch)
    length = drawer.num_samples_at(args.epoch)
    if args.json:
        answer = {
            "mixing": mixture.mixing.canonical(),
            "epoch": args.epoch,
            "num_samples": length,
            "versions": mixture_versions(mixture.mixing.algorithm),
            "sources": [
                {
                    "name": share.name,
                    "requested": share.requested,
                    "samples": share.samples,
                    "realised": share.realised,
                    "tokens_realised": share.tokens_realised,
                    "passes": share.passes,
                    "warning": share.warning,
                }
                for share in shares
            ],
        }
        print(json.dumps(answer, indent=2), file=out)
        return
    print(
        f"{mixture.mixing.algorithm}: epoch {args.epoch} draws {length} samples "
        f"from {len(shares)} sources",
        file=out,
    )
    header = ("source", "requested", "realised", "samples", "tokens", "passes")
    rows = [
        (
            share.name,
            _pct(share.requested),
            _pct(share.realised),
            str(share.samples),
            _pct(share.tokens_realised),
            _num(share.passes),
        )
        for share in shares
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)), file=out)
    for share in shares:
        if share.warning:
            print(f"warning: {share.warning}", file=out)


def _source_rows(item: dict[str, Any], base: Path) -> tuple[int, Any]:
    """A source's length, and its token lengths when it names a ``length_column``."""
    if "file" not in item:
        if "length_column" in item or "format" in item:
            raise CommandError("'length_column' and 'format' need a source 'file'")
        length = item.get("length")
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise CommandError(f"source {item.get('name')!r}: 'length' should be an integer >= 0")
        return length, None
    if "length" in item:
        raise CommandError(
            f"source {item.get('name')!r}: give its 'length' or its 'file', not both"
        )
    return _read_token_lengths(
        base / str(item["file"]), item.get("format"), item.get("length_column")
    )


def _read_token_lengths(path: Path, fmt: str | None, column: str | None) -> tuple[int, Any]:
    """Rows of a Parquet, Arrow, CSV or JSON Lines file, and ``column`` as float64 lengths."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    fmt = fmt or FORMATS_BY_SUFFIX.get(path.suffix.lower())
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            rows = parquet.metadata.num_rows
            names = parquet.schema_arrow.names
            wanted = [column] if column in names else []
            table = parquet.read(columns=wanted) if wanted else pa.table({n: [] for n in names})
        elif fmt == "arrow":
            import pyarrow.feather as feather

            table = feather.read_table(path)
            rows = table.num_rows
        elif fmt == "csv":
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(path)
            rows = table.num_rows
        elif fmt == "jsonl":
            import pyarrow.json as pjson

            table = pjson.read_json(path)
            rows = table.num_rows
        else:
            raise CommandError(
                f"{path}: token lengths are read from Parquet, Arrow, CSV or JSON Lines; "
                "give 'format'"
            )
    except (OSError, pa.ArrowException) as exc:
        raise CommandError(f"cannot read {path}: {exc}") from exc
    if column is None:
        return rows, None
    if column not in table.column_names:
        raise CommandError(
            f"{path} has no column {column!r}; it has {', '.join(table.column_names) or 'none'}"
        )
    values = table.column(column)
    if values.null_count or not (
        pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
    ):
        raise CommandError(f"{path}: column {column!r} should hold numbers, with no nulls")
    lengths = np.asarray(pc.cast(values, pa.float64()).to_numpy(), dtype=np.float64)
    if not np.all(np.isfinite(lengths) & (lengths >= 0)):
        raise CommandError(f"{path}: column {column!r} should hold finite numbers >= 0")
    return rows, lengths
