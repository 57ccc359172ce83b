"""The browser test's machinery: the app served by hypercorn in a thread of its own on a free
loopback port, and headless Debian Chromium driven through its chromedriver by Selenium."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.processes import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE = Path(__file__).with_name("vendor") / "axe-core" / "axe.min.js"
WAIT = 20.0


class Served:
    """`app` under hypercorn on 127.0.0.1, start-up and shut-down (lifespan) included."""

    def __init__(self, app: Quart) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-app", daemon=True)

    def __enter__(self) -> Served:
        self._thread.start()
        assert self._ready.wait(WAIT)
        until(lambda: self._live(), "the served app answers /livez")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(WAIT)

    def _live(self) -> bool:
        try:
            return httpx.get(f"{self.url}/livez", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        await serve(self.app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]


def until(check: Callable[[], Any], what: str, within: float = WAIT) -> Any:
    """Poll `check` until it returns something true; fail naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {within} s: {what}")


def browser() -> webdriver.Chrome:
    """Headless Chromium, 1280 pixels wide; nothing downloaded (Debian's binaries)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in CI, as the machines here run
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--hide-scrollbars",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def axe_violations(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """axe-core's violations of the page shown, each `{id, impact, help, nodes}`."""
    driver.execute_script(AXE.read_text() + "\n;return true;")
    script = """
        const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ['violations']}).then(
            (r) => done(r.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => n.target.join(' '))}))),
            (e) => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));
    """
    driver.set_script_timeout(60)
    found: list[dict[str, Any]] = driver.execute_async_script(script)
    return found


def full_page_screenshot(driver: webdriver.Chrome, path: Path) -> None:
    """The whole page as one PNG: the window is made as tall as the document first (twice:
    a taller window can lay the page out anew)."""
    for _ in range(2):
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(int(height) + 140, 600), 6000))
    path.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)
