"""A real headless Chromium (Debian's package) driven by Playwright, for tests that look at pages as a person does.

Playwright drives the Debian binary through `executable_path` (`playwright install` cannot download a
browser here). Without Chromium the browser tests skip, naming the command that installs it, except
under CI (CI=true), where a missing browser is a failure: `.ci/run` installs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

INSTALL = "apt-get install -y chromium"
# What headless Chromium needs on these machines: no sandbox (containers run it as root), no GPU,
# and nothing that reaches the network on its own.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1200, "height": 900}


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _unavailable(why: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{why} — CI must run the browser tests (.ci/run installs Chromium)", pytrace=False)
    pytest.skip(why)


@dataclass
class Opened:
    """A page, and everything it said on its console or threw."""

    page: Any
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Chromium per test module, with a fresh profile folder of its own.

    Not per session: Playwright's sync API keeps an asyncio loop running on the main thread while it is
    open, and every later in-process test that calls asyncio.run (the local lane) would fail.
    """
    executable = chromium_path()
    if executable is None:
        _unavailable(f"Chromium is not installed — install it with `{INSTALL}` (as root) to run the browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright is not installed — run `make install` (it is in the dev extra)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=FLAGS,
            viewport=VIEWPORT,
            offline=True,
            java_script_enabled=True,
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def open_page(browser_context: Any) -> Iterator[Any]:
    """open_page(path) → Opened, once the page has built its first screen; pages close after the test."""
    pages: list[Any] = []

    def open_(path: Path, ready: str | None = "html[data-ready='1']") -> Opened:
        page = browser_context.new_page()
        pages.append(page)
        opened = Opened(page)
        page.on(
            "console",
            lambda msg: (
                opened.errors.append(f"console {msg.type}: {msg.text}") if msg.type in ("error", "warning") else None
            ),
        )
        page.on("pageerror", lambda exc: opened.errors.append(f"uncaught: {exc}"))
        page.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message), dialog.dismiss()))
        page.on(
            "request",
            lambda req: (
                opened.errors.append(f"request: {req.url}")
                if not req.url.startswith(("file:", "data:", "about:"))
                else None
            ),
        )
        page.goto(path.resolve().as_uri())
        if ready:
            page.wait_for_selector(ready, state="attached")
        return opened

    yield open_
    for page in pages:
        page.close()
