"""A plan's report: one self-contained HTML page a person can read a plan's balance from.

Plain HTML, inline CSS and an inline SVG chart: no JavaScript and no external asset, so it
opens from a file on an offline machine and is safe to serve with a strict
``Content-Security-Policy``. Everything taken from the plan (class names above all) is
escaped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from html import escape
from typing import Any, NamedTuple

from sampleplan.service.api.schemas import ClassRow, MixturePlanOut, PlanOut

#: A drawn sample of a class seen more often than this per epoch, on average, is flagged.
REPEAT_WARNING = 3.0

#: The chart draws at most this many classes (in class order); the table has them all
#: (or, past ``plan_classes_inline``, as many as the plan's answer lists).
MAX_CHART_CLASSES = 100

#: The warning names at most this many classes (those repeated most).
MAX_FLAGGED = 20

#: Nothing but the page itself: no script, no fetch, no external style or image.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d2330;
       margin: 2rem auto; max-width: 60rem; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d8dce4;
     padding-bottom: .2rem; }
code { font-family: ui-monospace, monospace; font-size: .9em; word-break: break-all; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: .3rem .5rem; border-bottom: 1px solid #e6e9ef; text-align: right; }
th { background: #f4f6f9; font-weight: 600; }
td.class, th.class, td.key { text-align: left; }
.warning { background: #fff4e0; border-left: 4px solid #e89a1c; padding: .6rem .9rem;
           margin: 1rem 0; }
.ok { background: #eaf6ec; border-left: 4px solid #3a9a4a; padding: .6rem .9rem; margin: 1rem 0; }
.muted { color: #5b6475; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2330; }
svg .bar-before { fill: #9aa5b8; }
svg .bar-after { fill: #2f6fd6; }
"""


def _pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _weight(value: float | None, strategy: object) -> str:
    if value is None:
        return "per sample" if strategy == "sample_weights" else "-"
    return f"{value:.6g}"


def _samples(count: int) -> str:
    return f"{count:,} sample" + ("" if count == 1 else "s")


def _short(label: object, width: int = 22) -> str:
    text = str(label)
    return text if len(text) <= width else text[: width - 1] + "…"


#: Epochs the schedule chart covers (0 .. SCHEDULE_EPOCHS - 1).
SCHEDULE_EPOCHS = 21

#: Classes the schedule chart draws a line for (in class order).
MAX_SCHEDULE_LINES = 12

_LINE_COLOURS = (
    "#2f6fd6", "#e8591c", "#3a9a4a", "#9b4dca", "#c7a21a", "#d6336c",
    "#1aa3a3", "#6b7280", "#8c564b", "#17becf", "#bcbd22", "#393b79",
)  # fmt: skip


def render_report(
    plan: PlanOut,
    schedule_shares: ScheduleShares | None = None,
    *,
    flagged: tuple[list[ClassRow], int] | None = None,
) -> str:
    """The whole HTML page for ``plan``.

    ``schedule_shares``, for a plan with a schedule, are the first classes' expected
    shares of each epoch's draws; the page then charts them against the epoch. ``flagged``: the
    classes repeated most (at most :data:`MAX_FLAGGED`) and how many are repeated more
    than :data:`REPEAT_WARNING` times, over the whole table (a summarised plan's
    ``classes`` holds only its first rows); by default, found in ``plan.classes``.
    """
    config = plan.config
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # An empty icon: otherwise the browser asks the server for /favicon.ico.
        '<link rel="icon" href="data:,">',
        f"<title>sampleplan report: plan {escape(plan.id[:12])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Sampling plan <code>{escape(plan.id)}</code></h1>",
        f'<p class="muted">{escape(_describe(plan))}</p>',
        *_coverage_notes(plan, flagged),
        *_label_set_notes(plan),
        "<h2>Label shares before and after balancing</h2>"
        if plan.label_sets is not None
        else "<h2>Class shares before and after balancing</h2>",
        _chart(plan.classes, _num_classes(plan)),
        *(
            [
                "<h2>Class shares over the epochs of the schedule</h2>",
                _schedule_chart(plan, schedule_shares),
            ]
            if schedule_shares
            else []
        ),
        "<h2>Label table</h2>" if plan.label_sets is not None else "<h2>Class table</h2>",
        _class_table(plan),
        "<h2>Reproducibility manifest</h2>",
        '<p class="muted">Streams are recomputed from these; reproducing one elsewhere needs '
        "the same "
        "algorithm version and, for algorithm <code>torch</code>, the same torch version and CPU "
        "architecture. Check a stream against the SHA-256 that "
        "<code>GET /v1/plans/{plan_id}/indices/summary</code> answers.</p>",
        _key_values(
            [
                ("plan id", plan.id),
                ("dataset id", plan.dataset_id),
                *plan.versions.items(),
                ("config", json.dumps(config, sort_keys=True)),
            ]
        ),
        "</body></html>",
    ]
    return "\n".join(parts)


def _num_classes(plan: PlanOut) -> int:
    return len(plan.classes) if plan.classes_page is None else plan.classes_page.total


def _describe(plan: PlanOut) -> str:
    config = plan.config
    drawn = "with" if config.get("replacement", True) else "without"
    split = config.get("split")
    where = "the whole dataset"
    if split:
        parts = split.get("fractions") or split.get("lengths")
        where = f"the training part of a split {parts} (split seed {split.get('seed')})"
    return (
        f"{plan.num_samples:,} draws per epoch {drawn} replacement from "
        f"{plan.population_size:,} samples "
        f"({where}) in {_num_classes(plan):,} classes; strategy {config.get('strategy')}, "
        f"seed {config.get('seed')}, algorithm {config.get('algorithm')}."
    )


def _label_set_notes(plan: PlanOut) -> list[str]:
    """Multi-label plans: what the shares count, and why they cannot all be equal."""
    sets = plan.label_sets
    if sets is None:
        return []
    return [
        "<p><strong>Label sets:</strong> "
        f"{sets.label_cardinality:.3g} labels per sample on average "
        f"({sets.expected_label_cardinality:.3g} per drawn sample); "
        f"{sets.unlabelled:,} samples without a label, "
        f"{_num(sets.expected_unlabelled_draws, 1)} of them drawn per epoch. "
        "Shares count label occurrences: a drawn sample brings every label it carries, so "
        "drawing more of a rare label also draws its frequent companions, and multi-label "
        "shares cannot in general be made equal.</p>"
    ]


def _coverage_notes(
    plan: PlanOut, flagged_rows: tuple[list[ClassRow], int] | None = None
) -> list[str]:
    cov = plan.epoch_coverage
    approx = (
        "" if cov.exact else " (approximate: see the schema's note on sampling without replacement)"
    )
    notes = [
        "<p><strong>Distinct samples per epoch:</strong> "
        f"{_num(cov.expected_distinct_samples, 1)} expected "
        f"of {plan.population_size:,} ({_pct(cov.expected_coverage)}); a drawn sample is seen "
        f"{_num(cov.mean_repeats_per_drawn_sample)} times per epoch on average{escape(approx)}.</p>"
    ]
    if flagged_rows is None:
        flagged = [
            row
            for row in plan.classes
            if row.mean_repeats_per_drawn_sample is not None
            and row.mean_repeats_per_drawn_sample > REPEAT_WARNING
        ]
        flagged.sort(key=lambda r: -(r.mean_repeats_per_drawn_sample or 0.0))
        how_many = len(flagged)
    else:
        flagged, how_many = flagged_rows
    if flagged:
        items = "".join(
            f"<li>class <strong>{escape(str(row.label))}</strong>: {_samples(row.count)}, about "
            f"{_num(row.expected_draws, 1)} draws per epoch, so each drawn sample is seen "
            f"{_num(row.mean_repeats_per_drawn_sample, 1)} times per epoch "
            f"({_pct(row.expected_coverage)} of its samples seen)</li>"
            for row in flagged[:MAX_FLAGGED]
        )
        more = (
            f"<p>and {how_many - MAX_FLAGGED} more classes.</p>" if how_many > MAX_FLAGGED else ""
        )
        notes.append(
            f'<div class="warning"><strong>Minority samples repeat many times per epoch</strong> '
            f"(more than {REPEAT_WARNING:g} times on average):<ul>{items}</ul>{more}"
            "Repeating few samples invites overfitting to them; consider a milder strategy "
            "(<code>inverse_sqrt_frequency</code>, <code>effective_number</code>), fewer draws per "
            "epoch, or augmentation.</div>"
        )
    else:
        notes.append(
            '<div class="ok">No class has its drawn samples repeated more than '
            f"{REPEAT_WARNING:g} times "
            "per epoch on average.</div>"
        )
    return notes


def _chart(rows: list[ClassRow], total: int) -> str:
    """Horizontal grouped bars: per class, its share of the data and of the draws."""
    shown = rows[:MAX_CHART_CLASSES]
    label_w, bar_w, value_w = 170, 460, 70
    bar_h, gap, top = 13, 12, 34
    row_h = 2 * bar_h + gap
    width = label_w + bar_w + value_w
    height = top + row_h * len(shown) + 4
    peak = max([max(r.data_share, r.expected_share) for r in shown] + [1e-12])
    out = [
        f'<svg class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Share of each class in the data before balancing and in the draws after">',
        f'<rect class="legend-before bar-before" x="{label_w}" y="6" width="12" height="12"/>',
        f'<text x="{label_w + 18}" y="16">share of the data (before)</text>',
        f'<rect class="legend-after bar-after" x="{label_w + 210}" y="6" width="12" height="12"/>',
        f'<text x="{label_w + 228}" y="16">expected share of the draws (after)</text>',
    ]
    for i, row in enumerate(shown):
        y = top + i * row_h
        label = escape(str(row.label))
        out.append(f'<g class="class-bars" data-class="{label}"><title>{label}</title>')
        out.append(
            f'<text x="{label_w - 8}" y="{y + bar_h + 4}" text-anchor="end">'
            f"{escape(_short(row.label))}</text>"
        )
        for j, (kind, share) in enumerate(
            (("before", row.data_share), ("after", row.expected_share))
        ):
            w = bar_w * share / peak
            yy = y + j * bar_h
            out.append(
                f'<rect class="bar-{kind}" x="{label_w}" y="{yy}" width="{w:.2f}" '
                f'height="{bar_h - 1}"/>'
            )
            out.append(f'<text x="{label_w + w + 4:.2f}" y="{yy + bar_h - 2}">{_pct(share)}</text>')
        out.append("</g>")
    out.append("</svg>")
    if total > len(shown):
        out.append(
            f'<p class="muted">The chart shows the first {len(shown)} of {total:,} classes; '
            + (
                "the table below has them all.</p>"
                if len(rows) == total
                else f"the table below the first {len(rows):,}.</p>"
            )
        )
    return "".join(out)


class ScheduleShares(NamedTuple):
    """What the schedule chart draws: the first classes' expected shares by epoch."""

    #: The first classes (at most :data:`MAX_SCHEDULE_LINES`), in class order.
    labels: list[Any]
    #: ``shares[e][c]``: class ``c``'s expected share of epoch ``e``'s draws.
    shares: list[list[float]]
    #: The largest share of any class (not only the first) in any epoch.
    peak: float


def _schedule_chart(plan: PlanOut, schedule: ScheduleShares) -> str:
    """Lines: per class, its expected share of each epoch's draws."""
    shares, peak = schedule.shares, schedule.peak
    left, plot_w, plot_h, top, legend_w = 50, 520, 220, 16, 180
    width, height = left + plot_w + legend_w, top + plot_h + 40
    epochs = len(shares)
    peak = max(peak, 1e-12)
    lines = [
        f'<svg class="schedule-chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Expected share of each class in the draws of each epoch">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#9aa5b8"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#9aa5b8"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{_pct(peak, 0)}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0%</text>',
        f'<text x="{left + plot_w / 2:.0f}" y="{top + plot_h + 32}" text-anchor="middle">'
        "epoch</text>",
    ]
    step = max(1, (epochs - 1) // 10)
    for e in range(0, epochs, step):
        x = left + plot_w * e / max(epochs - 1, 1)
        lines.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{e}</text>')
    for c, name in enumerate(schedule.labels[:MAX_SCHEDULE_LINES]):
        colour = _LINE_COLOURS[c % len(_LINE_COLOURS)]
        points = " ".join(
            f"{left + plot_w * e / max(epochs - 1, 1):.1f},"
            f"{top + plot_h * (1 - shares[e][c] / peak):.1f}"
            for e in range(epochs)
        )
        label = escape(str(name))
        lines.append(
            f'<g class="class-line" data-class="{label}"><title>{label}</title>'
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/></g>'
        )
        y = top + 14 * c + 8
        lines.append(
            f'<rect x="{left + plot_w + 16}" y="{y - 9}" width="10" height="10" '
            f'fill="{colour}"/><text x="{left + plot_w + 30}" y="{y}">'
            f"{escape(_short(name))}: {_pct(shares[0][c])} → {_pct(shares[-1][c])}</text>"
        )
    lines.append("</svg>")
    if _num_classes(plan) > MAX_SCHEDULE_LINES:
        lines.append(
            f'<p class="muted">The chart shows the first {MAX_SCHEDULE_LINES} of '
            f"{_num_classes(plan):,} classes.</p>"
        )
    return "".join(lines)


def _class_table(plan: PlanOut) -> str:
    head = (
        '<table class="classes"><thead><tr><th class="class">class</th><th>count</th>'
        "<th>weight per sample</th><th>share of data</th><th>share of draws</th>"
        "<th>draws per epoch</th><th>distinct seen per epoch</th><th>share of class seen</th>"
        "<th>repeats per drawn sample</th></tr></thead><tbody>"
    )
    body = "".join(
        f'<tr><td class="class">{escape(str(r.label))}</td><td>{r.count:,}</td>'
        f"<td>{_weight(r.class_weight, plan.config.get('strategy'))}</td>"
        f"<td>{_pct(r.data_share)}</td><td>{_pct(r.expected_share)}</td>"
        f"<td>{_num(r.expected_draws, 1)}</td><td>{_num(r.expected_distinct_samples, 1)}</td>"
        f"<td>{_pct(r.expected_coverage)}</td><td>{_num(r.mean_repeats_per_drawn_sample)}</td></tr>"
        for r in plan.classes
    )
    cov = plan.epoch_coverage
    foot = (
        f'<tfoot><tr><th class="class">all</th><th>{plan.population_size:,}</th><th></th>'
        f"<th>100.0%</th><th>100.0%</th><th>{plan.num_samples:,}</th>"
        f"<th>{_num(cov.expected_distinct_samples, 1)}</th><th>{_pct(cov.expected_coverage)}</th>"
        f"<th>{_num(cov.mean_repeats_per_drawn_sample)}</th></tr></tfoot>"
    )
    table = head + body + "</tbody>" + foot + "</table>"
    if plan.classes_page is None:
        return table
    page = plan.classes_page
    return table + (
        f'<p class="muted">The table shows the first {page.limit:,} of {page.total:,} classes '
        "(the totals are over all of them); <code>GET /v1/plans/{plan_id}/classes</code> "
        f"pages through the rest, from <code>{escape(page.next)}</code>.</p>"
    )


def _key_values(items: Iterable[tuple[str, str]]) -> str:
    rows = "".join(
        f'<tr><td class="key">{escape(k)}</td><td class="key"><code>{escape(v)}</code></td></tr>'
        for k, v in items
    )
    return f'<table class="manifest">{rows}</table>'


def render_mixture_report(plan: MixturePlanOut) -> str:
    """The HTML page of a mixture plan: each source's requested and realised share, the
    passes over it (a warning past 4) and the reproducibility manifest."""
    mixing = plan.config["mixing"]
    warnings = (
        [f'<div class="warning">{escape(w)}</div>' for w in plan.warnings]
        if plan.warnings
        else ['<div class="ok">No source is passed over more than 4 times in the epoch.</div>']
    )
    tokens = any(s.realised_token_share is not None for s in plan.sources)
    head = (
        '<table class="sources"><thead><tr><th class="class">source</th><th>from</th>'
        "<th>length</th><th>offset</th><th>requested share</th><th>realised share</th>"
        + ("<th>realised share of tokens</th>" if tokens else "")
        + "<th>samples</th><th>passes</th></tr></thead><tbody>"
    )
    body = "".join(
        f'<tr><td class="class">{escape(s.name)}</td>'
        f'<td class="key"><code>{escape(s.dataset_id or s.plan_id or "")[:12]}</code></td>'
        f"<td>{s.length:,}</td><td>{s.offset:,}</td><td>{_pct(s.requested_share, 2)}</td>"
        f"<td>{_pct(s.realised_share, 2)}</td>"
        + (f"<td>{_pct(s.realised_token_share, 2)}</td>" if tokens else "")
        + f"<td>{s.samples:,}</td><td>{_num(s.passes)}</td></tr>"
        for s in plan.sources
    )
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>sampleplan report: mixture {escape(plan.id[:12])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Mixture plan <code>{escape(plan.id)}</code></h1>",
        f'<p class="muted">{len(plan.sources):,} sources mixed by '
        f"<code>{escape(str(mixing['algorithm']))}</code>; epoch {plan.epoch} has "
        f"{plan.num_samples:,} positions over a ConcatDataset of {plan.size:,} samples.</p>",
        *warnings,
        "<h2>Sources: requested and realised shares</h2>",
        head + body + "</tbody></table>",
        "<h2>Reproducibility manifest</h2>",
        '<p class="muted">Check a stream against the SHA-256 that '
        "<code>GET /v1/plans/{plan_id}/indices/summary</code> answers.</p>",
        _key_values(
            [
                ("plan id", plan.id),
                *plan.versions.items(),
                ("config", json.dumps(plan.config, sort_keys=True)),
            ]
        ),
        "</body></html>",
    ]
    return "\n".join(parts)
