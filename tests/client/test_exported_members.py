"""The public surface: everything in ``client`` is in ``__all__``, and it stays light."""

from __future__ import annotations

import builtins
import subprocess
import sys
from pathlib import Path

import pytest

import sampleplan.client as client

ROOT = Path(__file__).resolve().parents[2]


def test_all_imports_are_exported() -> None:
    public = sorted(name for name in vars(client) if not name.startswith("_"))
    assert public == sorted(client.__all__)
    assert client.__all__ == sorted(client.__all__)


def test_every_export_has_a_docstring() -> None:
    for name in client.__all__:
        assert getattr(client, name).__doc__, name


def test_importing_the_client_pulls_in_no_server_dependency() -> None:
    # In a fresh interpreter: this process has the server imported already.
    code = (
        "import sys, sampleplan.client\n"
        "from sampleplan.client import (\n"
        "    AsyncSamplePlanClient, RemoteBatchSampler, RemoteWeightedSampler, SamplePlanClient)\n"
        "heavy = sorted(m for m in ('fastapi', 'starlette', 'sqlalchemy', 'pydantic',\n"
        "    'pydantic_settings', 'uvicorn', 'psycopg', 'sampleplan.service')\n"
        "    if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert result.stdout.strip() == ""


@pytest.mark.parametrize(
    ("old", "new"),
    [("TimeoutError", "TimeoutException"), ("BadRequestError", "ClientRequestError")],
)
def test_the_previous_names_are_deprecated_aliases(old: str, new: str) -> None:
    """Kept for one release: the same class, read with a warning, and not in ``__all__``."""
    assert old not in client.__all__ and new in client.__all__
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated.*{new}"):
        alias = getattr(client, old)
    assert alias is getattr(client, new)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated"):
        exec(f"from sampleplan.client import {old}", {})


def test_no_exported_name_shadows_a_builtin() -> None:
    assert not set(client.__all__) & set(dir(builtins))
    with pytest.raises(AttributeError):
        client.NoSuchName  # noqa: B018
