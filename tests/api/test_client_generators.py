"""Client generators take every operation of the API's OpenAPI document, without a warning.

openapi-python-client (tests/api/client_generators/python/requirements.txt) and
openapi-typescript (tests/api/client_generators/typescript/package-lock.json) generate a
client from the document a live server answers at ``/openapi.json``. A skipped
operation, a warning or an error fails the test; so does TypeScript that ``tsc --strict``
refuses. Then the generated Python client uploads a dataset, creates a plan and reads a
page of indices, which must be the page of torch's WeightedRandomSampler stream.

Both tools are installed once, outside the repository, in a cache directory keyed by
their pinned versions (``$SAMPLEPLAN_TOOLS_CACHE``, default
``~/.cache/sampleplan-tests``): openapi-python-client in a virtual environment of its own
(it needs httpx<0.29; the project's environment has 0.29), openapi-typescript by
``npm ci`` from its lock file. The first run needs PyPI and the npm registry; without
them the test fails and says which could not be reached.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from tests.helpers.servers import LiveServer

# Runs the generators, npm and tsc in processes: `make test-quick` leaves it out.
pytestmark = pytest.mark.slow

HERE = Path(__file__).parent / "client_generators"
PYTHON_REQUIREMENTS = HERE / "python" / "requirements.txt"
TYPESCRIPT_PROJECT = HERE / "typescript"

#: The generated Python package's name (a folder in the test's tmp directory).
PACKAGE = "generated_sampleplan_client"

INSTALL_TIMEOUT = 900
RUN_TIMEOUT = 300


def tools_cache() -> Path:
    if "SAMPLEPLAN_TOOLS_CACHE" in os.environ:
        return Path(os.environ["SAMPLEPLAN_TOOLS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sampleplan-tests"


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def _run(command: list[str], *, what: str, timeout: float, **kwargs: Any) -> str:
    """Run ``command``; its stdout and stderr together, or a failure saying ``what`` broke."""
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"{what}: {exc}", pytrace=False)
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"{what} (exit {done.returncode}):\n{output[-4000:]}", pytrace=False)
    return output


@contextlib.contextmanager
def _installing(target: Path) -> Iterator[bool]:
    """Whether ``target`` must be installed (it is missing or unfinished); marked finished
    when the block ends without an error.

    Under a file lock, so that pytest-xdist workers install once.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    finished = target / ".installed"
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if finished.exists():
            yield False
            return
        shutil.rmtree(target, ignore_errors=True)
        yield True
        finished.touch()


def openapi_python_client() -> Path:
    """The ``bin`` folder of a virtual environment holding openapi-python-client."""
    requirements = PYTHON_REQUIREMENTS.read_bytes()
    version = f"{sys.version_info.major}.{sys.version_info.minor}".encode()
    target = tools_cache() / f"openapi-python-client-{_digest(requirements, version)}"
    with _installing(target) as install:
        if install:
            _run(
                [sys.executable, "-m", "venv", str(target)],
                what="creating a virtual environment",
                timeout=INSTALL_TIMEOUT,
            )
            pip = [str(target / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
            _run(
                [*pip, "install", "-q", "-r", str(PYTHON_REQUIREMENTS)],
                what=f"installing openapi-python-client into {target} (is PyPI reachable?)",
                timeout=INSTALL_TIMEOUT,
            )
    return target / "bin"


def openapi_typescript() -> Path:
    """The ``node_modules/.bin`` folder holding openapi-typescript and tsc."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not on PATH: this test needs Node.js 20 and npm", pytrace=False)
    lock = (TYPESCRIPT_PROJECT / "package-lock.json").read_bytes()
    target = tools_cache() / f"openapi-typescript-{_digest(lock)}"
    with _installing(target) as install:
        if install:
            target.mkdir()
            for name in ("package.json", "package-lock.json"):
                shutil.copy(TYPESCRIPT_PROJECT / name, target / name)
            _run(
                [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                what=f"installing openapi-typescript into {target} with npm ci (is the npm "
                "registry reachable?)",
                timeout=INSTALL_TIMEOUT,
                cwd=target,
            )
    return target / "node_modules" / ".bin"


@pytest.fixture(scope="module")
def document(module_server: LiveServer) -> dict[str, Any]:
    """What the live server answers at /openapi.json."""
    body: dict[str, Any] = httpx.get(f"{module_server.url}/openapi.json").json()
    return body


@pytest.fixture(scope="module")
def document_file(document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(json.dumps(document, indent=1))
    return path


def operations(document: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(tag, method and path, operation id) of every operation."""
    return [
        (op["tags"][0], f"{method.upper()} {path}", op["operationId"])
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]


@pytest.fixture(scope="module")
def python_generated(
    document_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """The folder holding the package openapi-python-client writes, and what it said."""
    bin_dir = openapi_python_client()
    out = tmp_path_factory.mktemp("python-client")
    output = _run(
        [
            str(bin_dir / "openapi-python-client"),
            "generate",
            "--path",
            str(document_file),
            "--meta",
            "none",
            "--output-path",
            str(out / PACKAGE),
        ],
        what="openapi-python-client generate",
        timeout=RUN_TIMEOUT,
        cwd=out,
        # Its post-generation hooks run ruff, installed beside it.
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    return out, output


def test_openapi_python_client_takes_every_operation(
    python_generated: tuple[Path, str], document: dict[str, Any]
) -> None:
    out, output = python_generated
    # A clean run says only that it generates: every warning, and every operation or
    # schema it leaves out, is reported after that line.
    assert output.strip().splitlines() == [f"Generating {out / PACKAGE}"], output
    missing = [
        f"{where} ({name})"
        for tag, where, name in operations(document)
        if not (out / PACKAGE / "api" / tag / f"{name}.py").is_file()
    ]
    assert not missing, f"openapi-python-client generated no function for {missing}"


@pytest.fixture(scope="module")
def python_client(python_generated: tuple[Path, str]) -> Iterator[ModuleType]:
    """The generated package, imported from the tmp directory (and forgotten after)."""
    out, _ = python_generated
    sys.path.insert(0, str(out))
    try:
        yield __import__(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def test_openapi_typescript_takes_every_operation(
    document: dict[str, Any], document_file: Path, tmp_path: Path
) -> None:
    bin_dir = openapi_typescript()
    types = tmp_path / "sampleplan-api.ts"
    result = subprocess.run(
        [str(bin_dir / "openapi-typescript"), str(document_file), "--output", str(types)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    where = f"openapi-typescript (exit {result.returncode}):\n{result.stdout}{result.stderr}"
    # Warnings and errors go to stderr; stdout names the tool and the file written.
    assert result.returncode == 0 and result.stderr == "", where
    assert [line.split()[1] for line in result.stdout.strip().splitlines()] == [
        "openapi-typescript",
        str(document_file),
    ], where
    written = types.read_text()
    declared = set(
        re.findall(r"^    (\w+): \{$", written.split("export interface operations {")[1], re.M)
    )
    missing = [f"{w} ({name})" for _, w, name in operations(document) if name not in declared]
    assert not missing, f"openapi-typescript declared no operation for {missing}"
    _run(
        [
            *(str(bin_dir / "tsc"), "--noEmit", "--strict", "--skipLibCheck"),
            *("--target", "es2022", "--lib", "es2022", str(types)),
        ],
        what="tsc --strict on what openapi-typescript wrote",
        timeout=RUN_TIMEOUT,
    )


def test_the_generated_python_client_reads_torchs_stream(
    python_client: ModuleType, module_server: LiveServer
) -> None:
    """Upload, plan, page: the page is WeightedRandomSampler's, for the plan's seed and epoch."""
    from generated_sampleplan_client.api.datasets import create_dataset  # type: ignore[import-not-found]
    from generated_sampleplan_client.api.plans import create_plan, get_indices  # type: ignore[import-not-found]
    from generated_sampleplan_client.models import (  # type: ignore[import-not-found]
        DatasetCreate,
        DatasetOut,
        IndicesOut,
        PlanFromDataset,
        PlanOut,
    )
    from generated_sampleplan_client.types import File  # type: ignore[import-not-found]

    labels = [0] * 40 + [1] * 9 + [2] * 4 + [1] * 3 + [0] * 7
    seed, epoch, offset, limit = 5, 2, 10, 25
    with python_client.Client(
        base_url=module_server.url, raise_on_unexpected_status=True
    ) as client:
        created = create_dataset.sync_detailed(client=client, body=DatasetCreate(labels=labels))
        assert created.status_code == 201, created.content
        dataset = created.parsed
        assert isinstance(dataset, DatasetOut) and dataset.size == len(labels)
        # The raw form, the body's other media type: the same labels, the same dataset.
        raw = File(payload=io.BytesIO(np.asarray(labels, dtype="<i8").tobytes()))
        again = create_dataset.sync_detailed(client=client, body=raw)
        assert again.status_code == 200 and again.parsed.id == dataset.id, again.content

        plan = create_plan.sync(
            client=client, body=PlanFromDataset(dataset_id=dataset.id, seed=seed)
        )
        assert isinstance(plan, PlanOut) and plan.num_samples == len(labels)

        page = get_indices.sync(
            client=client, plan_id=plan.id, epoch=epoch, offset=offset, limit=limit
        )
        assert isinstance(page, IndicesOut)

    counts = np.bincount(labels)
    weights = [1.0 / counts[label] for label in labels]
    generator = torch.Generator().manual_seed(seed + epoch)
    stream = list(WeightedRandomSampler(weights, len(labels), generator=generator))
    assert (page.offset, page.length) == (offset, len(labels))
    assert page.indices == stream[offset : offset + limit]
