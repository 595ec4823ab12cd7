"""Fixtures of the browser tests: headless Chromium (Debian's ``chromium`` package) driven
by Playwright, with no network (how it is cut off: ``tests.helpers.browser``).

Playwright's pip package ships its driver, not a browser: we launch the system Chromium
(``make test`` installs it with apt when it is missing).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.helpers.browser import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, NetworkLog


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
