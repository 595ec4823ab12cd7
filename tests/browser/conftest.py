"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright, with no network.

Playwright's pip package ships its driver, not a browser: we launch the system Chromium
(``make test`` installs it with apt when it is missing). The browser is cut off from
everything but loopback three ways: every host name but 127.0.0.1 fails to resolve, every
non-loopback request goes to a proxy on a port nobody listens on, and the background
services that call home are off. :class:`NetworkLog` records every request the pages make
so that tests can assert that none left the machine.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "browser: drives headless Chromium (Debian's chromium package; make test installs it)",
    )


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


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        message = f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # Playwright gives every launch a fresh, temporary profile (user data dir).
        browser = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def network() -> NetworkLog:
    return NetworkLog()


@pytest.fixture
def page(browser: Browser, network: NetworkLog) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    context.on("request", lambda request: network.requests.append(request.url))
    context.on(
        "requestfailed",
        lambda request: network.failures.__setitem__(request.url, request.failure or ""),
    )
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
