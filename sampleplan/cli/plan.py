"""``sampleplan plan LABELS_FILE``: a plan from a labels file, locally or on a service."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from sampleplan.cli._common import (
    FORMATS,
    FORMATS_BY_SUFFIX,
    REPEAT_WARNING,
    CommandError,
    number_text,
    percent_text,
    weight_text,
)
from sampleplan.cli.mixtures import mixture_plan_command
from sampleplan.service.progress import Progress

if TYPE_CHECKING:
    from sampleplan.core.labels import Labels
    from sampleplan.core.labelsets import LabelSets


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


def write_local_report(plan: dict[str, Any], path: str) -> None:
    from sampleplan.service.api.report import render_report
    from sampleplan.service.api.schemas import PlanOut

    html = render_report(PlanOut.model_validate(plan))
    try:
        Path(path).write_text(html, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot write {path!r}: {exc.strerror or exc}") from exc


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
            weight_text(row["class_weight"], config["strategy"]),
            percent_text(row["data_share"]),
            percent_text(row["expected_share"]),
            number_text(row["expected_draws"], 1),
            number_text(row["expected_distinct_samples"], 1),
            percent_text(row["expected_coverage"]),
            number_text(row["mean_repeats_per_drawn_sample"]),
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
        number_text(cov["expected_distinct_samples"], 1),
        percent_text(cov["expected_coverage"]),
        number_text(cov["mean_repeats_per_drawn_sample"]),
    ]
    widths = [max(len(r[i]) for r in [columns, *rows, total]) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    body = [line(columns), line(["-" * w for w in widths]), *map(line, rows), line(total)]
    notes = [
        "",
        "expected distinct samples per epoch: "
        f"{number_text(cov['expected_distinct_samples'], 1)} of "
        f"{plan['population_size']:,} ({percent_text(cov['expected_coverage'])})"
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
