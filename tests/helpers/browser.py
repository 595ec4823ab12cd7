"""Headless Chromium (Debian's ``chromium`` package) cut off from the network, and a log of
what the pages asked for.

The browser is cut off from everything but loopback three ways: every host name but
127.0.0.1 fails to resolve, every non-loopback request goes to a proxy on a port nobody
listens on, and the background services that call home are off. :class:`NetworkLog`
records every request the pages make so that tests can assert that none left the machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = os.environ.get("SAMPLEPLAN_CHROMIUM", "/usr/bin/chromium")

#: Where screenshots go: the repository's artifacts/ (gitignored), for CI to keep.
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    # Nothing resolves but loopback, and anything not on loopback goes to a dead proxy.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=127.0.0.1;localhost",
]

LOCAL_SCHEMES = {"blob", "data", "about"}


@dataclass
class NetworkLog:
    """Every request the pages asked for, and the ones that failed (with why)."""

    requests: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)

    def clear(self) -> None:
        self.requests.clear()
        self.failures.clear()

    def assert_nothing_left_the_machine(self) -> None:
        """Every request went to loopback, stayed in the page, or was refused by the page's CSP.

        A request refused by Content-Security-Policy never reaches the network stack; any
        other non-loopback request would have failed at the dead proxy and is an error.
        """
        assert self.requests, "the log saw no request at all"
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in LOCAL_SCHEMES or parts.hostname in ("127.0.0.1", "localhost"):
                continue
            assert self.failures.get(url) == "csp", (
                f"a request left for {url} ({self.failures.get(url)})"
            )
        local_failures = {
            u: f for u, f in self.failures.items() if urlsplit(u).hostname == "127.0.0.1"
        }
        assert not local_failures, f"local requests failed: {local_failures}"
