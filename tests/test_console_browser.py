"""The console in a real browser: Debian's Chromium, driven by Selenium through chromedriver,
against the app served by hypercorn, with deliveries sent through the signed webhook path.

One served app and one browser for the module (tests/scheduling.py keeps its tests on one
worker). A missing browser fails the tests, it never skips them (`make test` installs it).
The screenshots in docs/console/ are made here (`CLERK_SYNC_SCREENSHOTS=1 make test
ARGS=tests/test_console_browser.py` writes them there; otherwise into a temporary directory, so
a test run leaves the checkout clean); axe-core checks each page.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from clerk_sync_organizations import plugin as organizations_plugin
from clerk_sync_users import plugin as users_plugin
from pymongo import MongoClient
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from clerk_sync import Context, Event, Plugin, Settings, create_app
from clerk_sync.testing import TEST_SECRET, envelope, new_svix_id, signed_headers
from tests.console_browser_support import (
    CHROMEDRIVER,
    CHROMIUM,
    Served,
    axe_violations,
    browser,
    full_page_screenshot,
    until,
)
from tests.test_auth import signer

DOCS = Path(__file__).resolve().parents[1] / "docs" / "console"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: docs/console/ when asked for, else a temporary directory."""
    if os.environ.get("CLERK_SYNC_SCREENSHOTS") == "1":
        return DOCS
    return tmp_path_factory.mktemp("screenshots")


OPERATOR = "user_2operator000000000000000"
ERROR = "CRM answered 503: try again later"


def user_of(name: str) -> str:
    return f"user_2{name}".ljust(27, "0")


@dataclass
class Crm:
    """The objects whose `crm` handler raises, until a test takes them out."""

    broken: set[str] = field(default_factory=set)


def crm_plugin(crm: Crm) -> Plugin:
    plugin = Plugin("crm")

    @plugin.on("user.created", "user.updated", "organization.created")
    async def push(event: Event, ctx: Context[None]) -> None:
        if event.data.get("id") in crm.broken:
            raise RuntimeError(ERROR)

    return plugin


@dataclass
class Console:
    served: Served
    driver: webdriver.Chrome
    crm: Crm

    def send(self, event_type: str, data: dict[str, Any]) -> str:
        """One signed delivery over HTTP; its svix-id."""
        svix_id = new_svix_id()
        body = envelope(event_type, data)
        headers = signed_headers(body, msg_id=svix_id)
        httpx.post(f"{self.served.url}/webhooks/clerk", content=body, headers=headers, timeout=10)
        return svix_id

    def open(self, path: str) -> None:
        self.driver.get(f"{self.served.url}{path}")

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "main").text)

    def listed(self) -> list[str]:
        links = self.driver.find_elements(By.CSS_SELECTOR, "table.list tbody a")
        return [str(a.text) for a in links]

    def assert_accessible(self) -> None:
        bad = [v for v in axe_violations(self.driver) if v["impact"] in ("serious", "critical")]
        assert bad == []


def seed(console: Console) -> None:
    """A day's worth of traffic in miniature: users, organizations, sessions nobody handles,
    and one user whose CRM push keeps failing."""
    console.crm.broken.add(user_of("ingrid"))
    for name in ("maya", "ravi", "lena", "tomas", "ingrid", "noor"):
        user_id = user_of(name)
        console.send(
            "user.created",
            {
                "id": user_id,
                "object": "user",
                "first_name": name.title(),
                "email_addresses": [],
                "private_metadata": {"stripe_customer": f"cus_{name}_secret"},
                "public_metadata": {"plan": "team"},
            },
        )
    console.send("organization.created", {"id": "org_2northwind000000000000", "name": "Northwind"})
    for n in range(3):
        console.send("session.created", {"id": f"sess_2seed{n}", "user_id": "user_2maya"})


@pytest.fixture(scope="module")
def console(mongodb_url: str) -> Iterator[Console]:
    """The served app (console for OPERATOR, by the `__session` cookie) and the browser."""
    database = f"test_console_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        _env_file=None,
        clerk_webhook_signing_secret=TEST_SECRET,
        mongodb_url=mongodb_url,
        mongodb_db=database,
        log_format="json",
        log_level="warning",
        clerk_jwt_key=signer("ins_key_one").pem,
        clerk_sync_console_users=OPERATOR,
        clerk_sync_grafana_url="https://grafana.example/d/clerk-sync",
    )
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    assert missing == [], "the browser is not installed: run bash scripts/install-tools.sh"
    crm = Crm()
    app = create_app(settings, plugins=[crm_plugin(crm), users_plugin, organizations_plugin])
    driver = browser()
    try:
        with Served(app) as served:
            shown = Console(served, driver, crm)
            seed(shown)
            shown.open("/console/static/console.css")  # the cookie needs the origin open
            token = signer("ins_key_one").token(sub=OPERATOR, exp=2**31 - 1)
            driver.add_cookie({"name": "__session", "value": token, "path": "/"})
            yield shown
    finally:
        driver.quit()
        client: MongoClient[dict[str, Any]] = MongoClient(mongodb_url)
        client.drop_database(database)
        client.close()


def test_the_list_shows_the_deliveries_and_the_filters_narrow_it(
    console: Console, shots: Path
) -> None:
    ravi = console.send("user.updated", {"id": user_of("ravi"), "object": "user"})

    def settled() -> bool:
        console.open("/console/deliveries")
        table = console.driver.find_element(By.CSS_SELECTOR, "table.list tbody").text
        return ravi in console.listed() and "processing" not in table

    until(settled, "the new delivery is listed with its outcome")
    assert len(console.listed()) >= 11
    console.assert_accessible()
    full_page_screenshot(console.driver, shots / "deliveries.png")

    Select(console.driver.find_element(By.ID, "f-status")).select_by_visible_text("failed")
    console.driver.find_element(By.CSS_SELECTOR, "form.filters button").click()
    until(lambda: "status=failed" in console.driver.current_url, "the filter is applied")
    failed_rows = console.driver.find_elements(By.CSS_SELECTOR, "table.list tbody tr")
    assert failed_rows
    assert all("failed" in row.text for row in failed_rows)
    assert ravi not in console.listed()

    console.open("/console/deliveries")
    box = console.driver.find_element(By.ID, "f-q")
    box.send_keys(user_of("ravi"))
    box.submit()
    until(lambda: "q=user_2ravi" in console.driver.current_url, "the search is applied")
    assert len(console.listed()) == 2  # its user.created and its user.updated
    assert ravi in console.listed()


def test_a_failed_delivery_shows_the_error_and_replay_processes_it_once_fixed(
    console: Console, shots: Path
) -> None:
    user_id = user_of("replay")
    console.crm.broken.add(user_id)
    svix_id = console.send("user.created", {"id": user_id, "object": "user"})
    console.open(f"/console/deliveries/{svix_id}")
    assert "failed" in console.driver.find_element(By.ID, "delivery-status").text
    assert ERROR in console.text()
    console.assert_accessible()
    full_page_screenshot(console.driver, shots / "delivery.png")

    console.driver.find_element(By.XPATH, "//button[text()='Replay this delivery']").click()
    until(lambda: "replayed=" in console.driver.current_url, "the page after the replay")
    assert "a handler failed again" in console.text()  # not fixed yet

    console.crm.broken.discard(user_id)
    console.driver.find_element(By.XPATH, "//button[text()='Replay this delivery']").click()
    until(lambda: "replayed=processed" in console.driver.current_url, "the second replay")
    assert "the delivery is processed" in console.text()
    assert console.driver.find_element(By.ID, "delivery-status").text == "processed"
    assert "Replay this delivery" not in console.text()


def test_the_overview_charts_the_traffic_and_names_the_failing_handler(
    console: Console, shots: Path
) -> None:
    console.open("/console")
    bars = console.driver.find_elements(By.CSS_SELECTOR, "svg rect")
    assert bars
    assert "crm:push" in console.text()
    assert ERROR in console.text()
    links = console.driver.find_elements(By.LINK_TEXT, "Grafana dashboard")
    assert [a.get_attribute("href") for a in links] == ["https://grafana.example/d/clerk-sync"]
    console.assert_accessible()
    full_page_screenshot(console.driver, shots / "overview.png")
