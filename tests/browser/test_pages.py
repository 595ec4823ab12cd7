"""What a person sees, in a real browser with no network: the API docs and a plan's report."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from tests.helpers.browser import NetworkLog
from tests.helpers.servers import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # Chromium: not in `make test-quick`

TIMEOUT_MS = 30_000


def operation_count(server: LiveServer) -> int:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    return sum(
        1
        for item in schema["paths"].values()
        for method in item
        if method in {"get", "head", "post", "put", "delete"}
    )


def test_swagger_ui_renders_every_operation(
    page: Page, module_server: LiveServer, network: NetworkLog, artifacts: Path
) -> None:
    expected = operation_count(module_server)
    page.goto(f"{module_server.url}/docs")
    page.locator(".opblock").nth(expected - 1).wait_for(timeout=TIMEOUT_MS)
    assert page.locator(".opblock").count() == expected
    assert page.locator(".opblock-summary-path").first.is_visible()
    page.screenshot(path=str(artifacts / "docs.png"), full_page=True)
    network.assert_nothing_left_the_machine()


def test_swagger_ui_tries_an_endpoint(
    page: Page, module_server: LiveServer, network: NetworkLog, artifacts: Path
) -> None:
    """A newcomer opens POST /v1/plans, presses Try it out and Execute with the example."""
    page.goto(f"{module_server.url}/docs")
    operation = page.locator("#operations-plans-create_plan")
    operation.wait_for(timeout=TIMEOUT_MS)
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=TIMEOUT_MS)
    assert status.inner_text().strip() in {"200", "201"}
    assert (
        '"epoch_coverage"'
        in operation.locator(".live-responses-table .microlight").first.inner_text()
    )
    operation.screenshot(path=str(artifacts / "docs-try-it-out.png"))
    network.assert_nothing_left_the_machine()


def test_redoc_renders_every_operation(
    page: Page, module_server: LiveServer, network: NetworkLog, artifacts: Path
) -> None:
    expected = operation_count(module_server)
    page.goto(f"{module_server.url}/redoc")
    selector = '[data-section-id^="operation/"]'
    page.locator(selector).nth(expected - 1).wait_for(state="attached", timeout=TIMEOUT_MS)
    assert page.locator(selector).count() == expected
    assert page.locator("h2", has_text="Create a sampling plan").first.is_visible()
    page.screenshot(path=str(artifacts / "redoc.png"))
    network.assert_nothing_left_the_machine()


def test_report_shows_one_bar_per_class(
    page: Page, module_server: LiveServer, network: NetworkLog, artifacts: Path
) -> None:
    labels = ["cat"] * 120 + ["dog"] * 30 + ["emu"] * 6 + ["yak"] * 2
    plan = httpx.post(
        f"{module_server.url}/v1/plans",
        json={"labels": labels, "split": {"fractions": [0.8, 0.2], "seed": 1}},
    ).json()
    page.goto(f"{module_server.url}/v1/plans/{plan['id']}/report")
    classes = [row["class"] for row in plan["classes"]]
    for kind in ("before", "after"):
        bars = page.locator(f"svg.chart g.class-bars rect.bar-{kind}")
        assert bars.count() == len(classes)
        for i in range(len(classes)):
            box = bars.nth(i).bounding_box()
            assert box is not None and box["width"] > 0 and box["height"] > 0
    groups = page.locator("svg.chart g.class-bars")
    assert [groups.nth(i).get_attribute("data-class") for i in range(groups.count())] == classes
    # The rare class's repeats are flagged, as a reader would see them.
    assert page.locator(".warning").is_visible()
    assert "yak" in page.locator(".warning").inner_text()
    assert page.locator("table.classes tbody tr").count() == len(classes)
    page.screenshot(path=str(artifacts / "report.png"), full_page=True)
    network.assert_nothing_left_the_machine()


def test_docs_render_with_tokens_set(
    page: Page, network: NetworkLog, artifacts: Path, tmp_path: Path
) -> None:
    """With tokens set the docs stay open (issue 22): their script, styles and favicon load
    without a token, so both pages render."""
    from sampleplan.service.config import Settings
    from sampleplan.service.main import create_app

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}", api_tokens="t-1")
    with LiveServer(create_app(settings)) as server:
        statuses: dict[str, int] = {}
        page.on("response", lambda response: statuses.__setitem__(response.url, response.status))
        expected = operation_count(server)
        page.goto(f"{server.url}/docs")
        page.locator(".opblock").nth(expected - 1).wait_for(timeout=TIMEOUT_MS)
        page.screenshot(path=str(artifacts / "docs-with-tokens.png"))
        page.goto(f"{server.url}/redoc")
        selector = '[data-section-id^="operation/"]'
        page.locator(selector).nth(expected - 1).wait_for(state="attached", timeout=TIMEOUT_MS)
        assert page.locator(selector).count() == expected
        assert httpx.get(f"{server.url}/v1/plans/x").status_code == 401
    assets = {url: status for url, status in statuses.items() if "/static/docs/" in url}
    assert any(url.endswith("swagger-ui.css") for url in assets), statuses
    assert any(url.endswith("redoc.standalone.js") for url in assets), statuses
    assert all(status == 200 for status in assets.values()), assets
    network.assert_nothing_left_the_machine()
