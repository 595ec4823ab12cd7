"""Hostile input over HTTP (issue 22): integers past Python's 4300-digit limit are a 422,
never a 500; the docs' static assets open with tokens set."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

#: Where each body below holds "@", an integer of 5000 digits.
BIG = "1" * 5000


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/v1/datasets", '{"labels": [@]}', "application/json"),
        ("/v1/plans", '{"labels": [@]}', "application/json"),
        ("/v1/plans", '{"labels": [0, 1], "seed": @}', "application/json"),
        ("/v1/plans", '{"labels": [0, 1], "weights": [@, 1]}', "application/json"),
        ("/v1/plans", '{"labels": [0, 1], "num_samples": @}', "application/json"),
        ("/v1/datasets", "label\n@\n", "text/csv"),
        ("/v1/datasets", '{"label": @}\n', "application/x-ndjson"),
        (
            "/v1/runs/big/updates",
            '{"epoch": 0, "op": "set", "indices": [@], "values": [1]}',
            "application/json",
        ),
        (
            "/v1/runs/big/updates",
            '{"epoch": 0, "op": "set", "indices": [1], "values": [@]}',
            "application/json",
        ),
        (
            "/v1/runs/big/updates",
            '{"epoch": @, "op": "set", "indices": [1], "values": [1]}',
            "application/json",
        ),
        (
            "/v1/runs/big/updates",
            '{"epoch": 0, "step": @, "op": "mul", "indices": [1], "values": [1]}',
            "application/json",
        ),
    ],
)
def test_an_integer_of_4301_digits_is_a_422(
    module_api: TestClient, path: str, body: str, content_type: str
) -> None:
    plan = module_api.post("/v1/plans", json={"labels": [0, 1, 1]}).json()["id"]
    module_api.put("/v1/runs/big", json={"plan_id": plan})
    response = module_api.post(
        path, content=body.replace("@", BIG), headers={"Content-Type": content_type}
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "int" in response.json()["detail"]


def _every_route(client: TestClient) -> list[tuple[str, str]]:
    """Every operation of the API document (and HEAD of the /indices routes)."""
    schema = client.get("/openapi.json").json()
    routes = []
    for template, item in schema["paths"].items():
        if template in {"/healthz", "/readyz", "/metrics"}:
            continue
        path = template.replace("{plan_id}", "0" * 64).replace("{dataset_id}", "0" * 64)
        path = path.replace("{run_id}", "r")
        for method in item:
            if method in {"get", "head", "post", "put", "delete"}:
                routes.append((method.upper(), path))
                if path.endswith("/indices") and method == "get":
                    routes.append(("HEAD", path))
    return routes


def test_every_route_refuses_unknown_and_repeated_query_parameters(
    module_api: TestClient,
) -> None:
    routes = _every_route(module_api)
    assert len(routes) > 15
    for method, path in routes:
        unknown = module_api.request(method, f"{path}?epcoh=3")
        assert unknown.status_code == 422, (method, path, unknown.text)
        assert unknown.headers["content-type"].startswith("application/problem+json")
        if method == "HEAD":
            continue
        problem = unknown.json()
        assert problem["type"].endswith("invalid-input")
        assert problem["errors"][0]["loc"] == "query.epcoh"
        assert "epcoh" in problem["detail"] and "unknown query parameter" in problem["detail"]
    for path in ["/v1/plans/x/indices", "/v1/runs/r/indices", "/v1/plans/x/weights"]:
        repeated = module_api.get(f"{path}?epoch=3&epoch=4")
        assert repeated.status_code == 422, (path, repeated.text)
        assert repeated.json()["errors"] == [
            {"loc": "query.epoch", "msg": "given 2 times; give each query parameter once"}
        ]


def test_epcoh_no_longer_answers_epoch_0(module_api: TestClient) -> None:
    plan = module_api.post("/v1/plans", json={"labels": [0, 1, 1]}).json()["id"]
    assert module_api.get(f"/v1/plans/{plan}/indices?epoch=3").status_code == 200
    assert module_api.get(f"/v1/plans/{plan}/indices?epcoh=3").status_code == 422
    # A binary run update takes its fields from the query: those names, each once.
    module_api.put("/v1/runs/q", json={"plan_id": plan})
    body = b"\x01" + b"\x00" * 7 + b"\x00" * 6 + b"\xf0\x3f"  # index 1, value 1.0
    headers = {"Content-Type": "application/octet-stream"}
    ok = module_api.post(
        "/v1/runs/q/updates?epoch=0&op=mul&update_id=a", content=body, headers=headers
    )
    assert ok.status_code == 202, ok.text
    twice = module_api.post(
        "/v1/runs/q/updates?epoch=0&epoch=1&op=mul", content=body, headers=headers
    )
    assert twice.status_code == 422 and twice.json()["errors"][0]["loc"] == "query.epoch"
    odd = module_api.post("/v1/runs/q/updates?epoch=0&op=mul&stpe=2", content=body, headers=headers)
    assert odd.status_code == 422 and odd.json()["errors"][0]["loc"] == "query.stpe"
    # Probes and scrapes take any query (load balancers and Prometheus add their own).
    assert module_api.get("/healthz?verbose=1").status_code == 200
    assert module_api.get("/metrics?name[]=sampleplan_http_requests_total").status_code == 200


def test_a_compressed_body_is_a_415_never_decoded(module_api: TestClient) -> None:
    import gzip

    for encoding in ("gzip", "zstd", "br", "deflate"):
        response = module_api.post(
            "/v1/datasets",
            content=gzip.compress(b'{"labels": [0, 1, 1]}'),
            headers={"Content-Type": "application/json", "Content-Encoding": encoding},
        )
        assert response.status_code == 415, response.text
        assert "Content-Encoding" in response.json()["detail"]
    plain = module_api.post(
        "/v1/datasets",
        content=b'{"labels": [0, 1, 1]}',
        headers={"Content-Type": "application/json", "Content-Encoding": "identity"},
    )
    assert plain.status_code in (200, 201), plain.text


def _npy_claiming(count: int) -> bytes:
    """A .npy whose header declares ``count`` int64 values, followed by 8 bytes."""
    header = "{'descr': '<i8', 'fortran_order': False, 'shape': (" + str(count) + ",), }"
    header = header + " " * (118 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(8)


def test_npy_and_npz_headers_cannot_claim_more_than_the_body(module_api: TestClient) -> None:
    import io
    import zipfile

    lying = _npy_claiming(10**11)  # 800 GB declared, 8 bytes sent
    response = module_api.post(
        "/v1/datasets", content=lying, headers={"Content-Type": "application/x-npy"}
    )
    assert response.status_code == 422, response.text
    assert "declares shape (100000000000,)" in response.json()["detail"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as members:  # stored, as np.savez writes
        members.writestr("offsets.npy", lying)
        members.writestr("values.npy", lying)
    response = module_api.post(
        "/v1/datasets", content=archive.getvalue(), headers={"Content-Type": "application/x-npz"}
    )
    assert response.status_code == 422, response.text
    assert "declares shape" in response.json()["detail"]
    honest = module_api.post(
        "/v1/datasets", content=_npy_claiming(1), headers={"Content-Type": "application/x-npy"}
    )
    assert honest.status_code in (200, 201), honest.text


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_a_compressed_table_decodes_within_the_body_limit(tmp_path: object, fmt: str) -> None:
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sampleplan.service.config import Settings
    from sampleplan.service.main import create_app

    # 2e6 int64 labels: 16 MB decoded, a few kB compressed; the body limit is 1 MB.
    table = pa.table({"label": pa.array(np.zeros(2_000_000, dtype=np.int64))})
    small = pa.table({"label": pa.array(np.arange(1000, dtype=np.int64) % 3)})

    def encode(t: pa.Table) -> tuple[bytes, str]:
        out = io.BytesIO()
        if fmt == "parquet":
            pq.write_table(t, out, compression="zstd")
            return out.getvalue(), "application/vnd.apache.parquet"
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        with pa.ipc.new_stream(out, t.schema, options=options) as writer:
            writer.write_table(t, max_chunksize=100_000)
        return out.getvalue(), "application/vnd.apache.arrow.stream"

    url = f"sqlite:///{tmp_path}/budget.sqlite3"
    with TestClient(create_app(Settings(database_url=url, max_body_bytes=1 << 20))) as api:
        body, content_type = encode(table)
        assert len(body) < 1 << 20
        response = api.post("/v1/datasets", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 413, response.text
        assert "SAMPLEPLAN_MAX_BODY_BYTES" in response.json()["detail"]
        body, content_type = encode(small)
        response = api.post("/v1/datasets", content=body, headers={"Content-Type": content_type})
        assert response.status_code in (200, 201), response.text
