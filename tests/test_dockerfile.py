"""The Dockerfile and compose.yaml, checked statically (no Docker engine is needed).

These hold the image to what the operations docs promise: multi-stage and slim, pinned
dependencies, a non-root user, a health check, ``sampleplan serve`` as the entry point,
a /data volume for SQLite, and two replicas on PostgreSQL in compose.yaml.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent


def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def stages(steps: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for keyword, rest in steps:
        if keyword == "FROM":
            out.append([])
        if out:
            out[-1].append((keyword, rest))
    return out


DOCKERFILE = instructions(ROOT / "Dockerfile")
BUILD, RUNTIME = stages(DOCKERFILE)


def test_the_image_is_built_in_stages_on_slim_python() -> None:
    args = dict(
        rest.split("=", 1) for keyword, rest in DOCKERFILE if keyword == "ARG" and "=" in rest
    )
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", args["PYTHON_IMAGE"])
    assert BUILD[0][1] == "${PYTHON_IMAGE} AS build"
    assert RUNTIME[0][1] == "${PYTHON_IMAGE} AS runtime"
    copies = [rest for keyword, rest in RUNTIME if keyword == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]  # nothing else reaches the image
    assert not any(keyword == "RUN" and "pip install" in rest for keyword, rest in RUNTIME)


def test_dependencies_are_pinned() -> None:
    runs = " ".join(rest for keyword, rest in BUILD if keyword == "RUN")
    constraints = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    torch_pin = re.search(r"^torch==(\S+)$", constraints, re.M)
    assert torch_pin is not None
    assert f"--index-url https://download.pytorch.org/whl/cpu torch=={torch_pin.group(1)}" in runs
    assert "-c constraints.txt -r requirements.txt" in runs
    assert "--no-deps" in runs and "pip check" in runs
    lock = (ROOT / "docker" / "requirements.txt").read_text(encoding="utf-8")
    pins = [line for line in lock.splitlines() if line and not line.startswith("#")]
    assert pins and all(
        re.fullmatch(r"[A-Za-z0-9._-]+==[0-9][0-9A-Za-z.+]*", pin) for pin in pins
    ), pins
    pinned = {pin.split("==")[0].lower() for pin in pins}
    assert f"torch=={torch_pin.group(1)}" in pins
    # Every direct dependency of sampleplan and of its server extra is in the lock.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["server"]:
        name = re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, (
            f"{name} (from {requirement!r}) is not pinned in docker/requirements.txt"
        )


def test_the_service_runs_as_a_non_root_user_with_a_data_volume() -> None:
    users = [rest for keyword, rest in RUNTIME if keyword == "USER"]
    assert len(users) == 1
    user = users[0].split(":")[0]
    assert user not in {"root", "0"}
    assert any(
        "useradd" in rest and f"--uid {user}" in rest
        for keyword, rest in RUNTIME
        if keyword == "RUN"
    )
    assert any(keyword == "VOLUME" and json.loads(rest) == ["/data"] for keyword, rest in RUNTIME)
    env = " ".join(rest for keyword, rest in RUNTIME if keyword == "ENV")
    assert "SAMPLEPLAN_DATABASE_URL=sqlite:////data/sampleplan.sqlite3" in env
    assert any(keyword == "EXPOSE" and rest == "8000" for keyword, rest in RUNTIME)


def test_the_entry_point_is_sampleplan_serve_with_a_health_check() -> None:
    entry = [json.loads(rest) for keyword, rest in RUNTIME if keyword == "ENTRYPOINT"]
    assert entry == [["sampleplan", "serve"]]
    command = [json.loads(rest) for keyword, rest in RUNTIME if keyword == "CMD"]
    assert command == [["--host", "0.0.0.0", "--port", "8000"]]
    checks = [rest for keyword, rest in RUNTIME if keyword == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, probe = checks[0].partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(probe)
    assert argv[:2] == ["python", "-c"]
    ast.parse(argv[2])  # the probe is valid Python
    assert "http://127.0.0.1:8000/healthz" in argv[2]


def test_the_build_context_holds_what_the_build_copies() -> None:
    copied = set()
    for keyword, rest in BUILD:
        if keyword == "COPY":
            *sources, _target = shlex.split(rest)
            copied.update(s.rstrip("/") for s in sources)
    for source in copied:
        assert (ROOT / source).exists(), source
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8")
    for source in copied:
        assert f"!{source}" in ignore, source


def test_compose_runs_two_replicas_on_postgresql() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    replicas = {name: s for name, s in services.items() if s.get("build") == "."}
    assert len(replicas) == 2
    ports = set()
    for service in replicas.values():
        env = service["environment"]
        assert env["SAMPLEPLAN_DATABASE_URL"].startswith("postgresql://")
        assert env["SAMPLEPLAN_DATABASE_URL"].endswith("@postgres:5432/sampleplan")
        assert env["SAMPLEPLAN_API_TOKENS_FILE"] == "/run/secrets/api_tokens"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        ports.update(service["ports"])
    assert len(ports) == 2
    assert services["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])


def test_compose_puts_haproxy_with_the_tested_config_in_front_of_the_replicas() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    balancer = services["loadbalancer"]
    assert balancer["image"].startswith("haproxy:")
    assert "./docker/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in balancer["volumes"]
    assert balancer["ports"] == ["8000:8000"]
    replicas = sorted(name for name, s in services.items() if s.get("build") == ".")
    assert sorted(balancer["depends_on"]) == replicas
    config = (ROOT / "docker" / "haproxy.cfg").read_text(encoding="utf-8")
    for name in replicas:
        assert f"server {name} {name}:8000 check" in config
    assert "option httpchk GET /readyz" in config and "bind *:8000" in config
