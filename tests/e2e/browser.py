"""Helpers for the dashboard tests in headless Chromium (Debian's, driven by Playwright;
``make install`` installs it, Playwright never downloads a browser of its own)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
OVERFLOW_JS = "() => document.documentElement.scrollWidth - window.innerWidth"
# What sticks out past the right edge, to name it when the page scrolls sideways.
WIDEST_JS = """() => [...document.querySelectorAll('main *')]
  .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(-3).map(el => el.tagName + '.' + el.className + ' ' + (el.textContent || '').slice(0, 40))"""


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])


@contextlib.contextmanager
def browser_page(playwright, viewport: dict = LAPTOP) -> Iterator:
    """A page in a fresh headless browser. A script error on the page fails the test when
    the block ends; the browser closes whatever happens."""
    browser = launch(playwright)
    page = browser.new_page(viewport=viewport)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield page
        assert errors == [], errors
    finally:
        browser.close()


def sign_in(page, project: str, key: str) -> None:
    """Fills the sign-in form the dashboard shows a signed-out visitor (exact labels: a
    chart's text alternative on the page being left may mention "Projects")."""
    page.get_by_label("Project", exact=True).fill(project)
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Sign in").click()


def shoot(page, folder: Path, name: str) -> None:
    """Screenshots at laptop and phone width; the page must not scroll sideways."""
    for label, size in (("laptop", LAPTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_timeout(300)  # charts resize
        page.screenshot(path=str(folder / f"{name}-{label}.png"), full_page=True)
        assert page.evaluate(OVERFLOW_JS) <= 1, f"{name} scrolls sideways at {label} width: {page.evaluate(WIDEST_JS)}"
    page.set_viewport_size(LAPTOP)


def funnel_events(database_url: str, project: str, after_id: int = 0) -> list[dict]:
    """The funnel events the insights service stored for ``project`` (id above
    ``after_id``), oldest first: what the dashboard recorded as the user walked it."""
    import asyncio

    import asyncpg

    async def read() -> list[dict]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT id, step, resource, step_seconds, failure_category FROM insights.funnel_events"
                " WHERE project = $1 AND id > $2 ORDER BY id", project, after_id)
        finally:
            await conn.close()
        return [dict(r) for r in rows]

    return asyncio.run(read())

