"""The floor of ``make load``'s ``floor`` scenario: a bare ASGI app on the service's server.

It answers every request with one fixed body (given in files: ``--json`` for requests
without an ``Accept`` header naming ``application/octet-stream``, ``--octet`` for those)
and nothing else: no routing, no middleware, no validation. It runs under the uvicorn
configuration ``sampleplan serve`` uses (asyncio loop, the service's httptools protocol
with ``TCP_NODELAY`` and responses written by the round, no access log), so the pages of
a warm epoch can be measured as a fraction of what the server stack itself does with a
body of the same size.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def bare_app(json_body: bytes, octet_body: bytes) -> Any:
    """The ASGI app: ``json_body`` as ``application/json``, or ``octet_body`` when asked."""
    answers = {
        False: (
            [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(json_body))],
            json_body,
        ),
        True: (
            [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", b"%d" % len(octet_body)),
            ],
            octet_body,
        ),
    }

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            return
        octet = False
        for name, value in scope["headers"]:
            if name == b"accept":
                octet = b"octet-stream" in value
        headers, body = answers[octet]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    from sampleplan.service.server import HTTP_PROTOCOL

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--json", type=Path, required=True, help="the JSON body's file")
    parser.add_argument("--octet", type=Path, required=True, help="the binary body's file")
    args = parser.parse_args(argv)
    app = bare_app(args.json.read_bytes(), args.octet.read_bytes())
    # What `sampleplan serve` hands uvicorn (sampleplan.cli.serve_command), one worker.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="asyncio",
        http=HTTP_PROTOCOL,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
