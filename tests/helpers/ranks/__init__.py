"""What each process of the multi-process tests runs: spawned ranks import only their
module (kept light), and the Lightning scripts run as ``python SCRIPT``."""

from __future__ import annotations

from pathlib import Path

#: This folder, where the scripts are.
RANKS = Path(__file__).resolve().parent
