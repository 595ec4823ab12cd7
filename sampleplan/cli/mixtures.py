"""Mixtures on the command line: ``sampleplan plan --source``/``--mixture`` (a mixture plan
on a service) and ``sampleplan mix MIXTURE_FILE`` (shares computed locally)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from sampleplan.cli._common import (
    FORMATS_BY_SUFFIX,
    CommandError,
    number_text,
    percent_text,
)


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
            percent_text(row["requested_share"]),
            percent_text(row["realised_share"]),
            f"{row['samples']:,}",
            number_text(row["passes"]),
        ]
        if tokens:
            cells.insert(5, percent_text(row.get("realised_token_share")))
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
            percent_text(share.requested),
            percent_text(share.realised),
            str(share.samples),
            percent_text(share.tokens_realised),
            number_text(share.passes),
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
