"""``sampleplan report PLAN_ID``: a plan's HTML report, written or opened in a browser."""

from __future__ import annotations

import argparse
import os
import tempfile
import webbrowser
from pathlib import Path
from typing import TextIO

from sampleplan.cli._common import (
    CommandError,
)


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
