"""The dashboard in headless Chromium against the whole system (``python -m devstack``):
sign in, open the wizard by keyboard, step 1 with a broken file (every problem by line)
and with a slice of the Brown corpus (report, charts, preview), step 2 (model, preset,
inline validation, the estimate), start a job, see it in step 3 and cancel it.
Screenshots at laptop and phone width go to the test's artefact folder
(``MTW_ARTEFACTS``, else pytest's tmp dir) and the page must not scroll sideways.

Playwright drives Debian's chromium (``make install`` installs it); it never downloads
a browser of its own.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from .browser import CHROMIUM, browser_page, funnel_events, shoot, sign_in
from .test_wizard_step1 import BROWN

# The first estimate on a fresh database measures throughput (bounded by the system
# fixture's CALIBRATION_TIMEOUT_SECONDS).
ESTIMATE_TIMEOUT_MS = 90_000

pytestmark = [
    pytest.mark.skipif(not BROWN.is_file(), reason="the shared data files are missing"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is missing: run make install"),
]

# Every focusable control must have a name a screen reader can say.
UNNAMED_CONTROLS_JS = """() => [...document.querySelectorAll('main input, main select, main textarea, main button, main a[href]')]
  .filter(el => !el.disabled && el.type !== 'hidden')
  .filter(el => {
    const named = (el.labels && el.labels.length) || el.getAttribute('aria-label')
      || el.getAttribute('aria-labelledby') || (el.textContent || '').trim();
    return !named;
  }).map(el => el.outerHTML.slice(0, 120))"""


def brown_slice(path: Path, labels=("government", "fiction_romance", "humor"), per_label: int = 120) -> Path:
    """A few genres of the Brown corpus (whole texts, document column kept)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label", "document"])
    taken = dict.fromkeys(labels, 0)
    with open(BROWN, newline="") as f:
        for row in csv.DictReader(f):
            if taken.get(row["label"], per_label) < per_label:
                writer.writerow([row["text"], row["label"], row["document"]])
                taken[row["label"]] += 1
    path.write_text(out.getvalue())
    return path


def test_wizard_steps_one_and_two_in_the_browser(system, artefacts: Path, tmp_path: Path, database_url: str):
    from playwright.sync_api import expect, sync_playwright

    stack, url = system
    key = stack.mtw_env()["MTW_API_KEY"]
    before = max((e["id"] for e in funnel_events(database_url, "dev")), default=0)
    broken = tmp_path / "broken.csv"
    broken.write_text("text,label\nfine row,a\nthis,has,three\nanother,b\nno label,\n" + "x,a\ny,b\n" * 4)
    good = brown_slice(tmp_path / "brown_three_genres.csv")

    def assert_named_controls(page) -> None:
        assert page.evaluate(UNNAMED_CONTROLS_JS) == []

    with sync_playwright() as p, browser_page(p) as page:
        try:
            # Sign in: the key goes in a form, never in the URL.
            page.goto(url + "/")
            expect(page).to_have_url(url + "/signin")
            sign_in(page, "dev", key)
            create = page.get_by_role("button", name="Create Custom Model")
            expect(create).to_be_visible()
            assert key not in page.url
            assert all(not c["name"].startswith("mtw_key") or c["httpOnly"] for c in page.context.cookies())
            shoot(page, artefacts, "0-landing")

            # Keyboard: a new page puts focus on its heading; the next Tab is the
            # button; Enter opens the wizard.
            assert page.evaluate("document.activeElement.textContent") == "Your custom models"
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.textContent") == "Create Custom Model"
            page.keyboard.press("Enter")
            expect(page.get_by_role("heading", name="Step 1 — Your data")).to_be_visible()
            expect(page.locator("[aria-current=step]")).to_have_text(re.compile("Data"))
            assert_named_controls(page)

            # A broken file: every problem by line, nothing kept.
            page.get_by_label("Dataset name").fill("Broken example")
            page.locator("input[type=file]").set_input_files(str(broken))
            # Focus order of the upload form: name → file picker → upload button.
            page.get_by_label("Dataset name").focus()
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.type") == "file"
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.textContent") == "Upload and check"
            page.get_by_role("button", name="Upload and check").click()
            refusal = page.get_by_role("alert")
            expect(refusal).to_contain_text("This file cannot be used yet")
            expect(refusal).to_contain_text("2 problem(s) in total")
            rows = page.locator("table.errors tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.nth(0)).to_contain_text("3")
            expect(rows.nth(0)).to_contain_text("expected 2 columns")
            shoot(page, artefacts, "1-data-broken")

            # A fresh wizard with good data.
            page.evaluate("sessionStorage.clear()")
            page.goto(url + "/wizard/data")
            page.get_by_label("Dataset name").fill("Brown genres")
            page.locator("input[type=file]").set_input_files(str(good))
            page.get_by_role("button", name="Upload and check").click()
            found = page.locator("section", has=page.get_by_role("heading", name="What we found"))
            expect(found).to_contain_text("Text classification", timeout=90_000)
            expect(found).to_contain_text("CSV")
            expect(found).to_contain_text("360")
            expect(page.locator("progress[aria-label='Upload progress']")).to_have_attribute("value", "100")
            report = page.locator("section", has=page.get_by_role("heading", name="Quality report"))
            expect(report.locator("canvas[role=img]")).to_have_count(2)  # labels, lengths
            expect(report.get_by_role("img", name=re.compile("Label distribution.*government"))).to_be_visible()
            expect(report.get_by_role("heading", name="Findings")).to_be_visible()
            expect(page.get_by_role("combobox", name="label")).to_have_value("label")  # mapping editor
            expect(page.locator("table.preview tbody tr")).to_have_count(8)
            assert_named_controls(page)
            shoot(page, artefacts, "1-data-report")

            # Step 2: model, preset, advanced validation, estimate, start.
            page.get_by_role("button", name="Continue to parameters").click()
            expect(page.get_by_role("heading", name="Step 2 — Training settings")).to_be_visible()
            model = page.get_by_role("radio", name=re.compile("all-MiniLM-L6-v2"))
            expect(model).to_be_checked()
            expect(page.locator(".option", has=model)).to_contain_text("licence Apache-2.0")
            page.get_by_text("Quick", exact=True).click()
            expect(page.get_by_role("radio", name=re.compile("^Quick"))).to_be_checked()
            page.get_by_text("Advanced settings").click()
            rate = page.get_by_label("Learning rate", exact=True)
            rate.fill("5")
            expect(rate).to_have_attribute("aria-invalid", "true")
            expect(page.locator(".field", has=rate)).to_contain_text("Between")
            rate.fill("")
            expect(rate).to_have_attribute("aria-invalid", "false")
            page.get_by_text("Advanced settings").click()
            assert_named_controls(page)
            estimate = page.locator(".estimate")
            expect(estimate).to_contain_text("Training examples", timeout=ESTIMATE_TIMEOUT_MS)
            expect(estimate).to_contain_text(re.compile(r"About \d+|Duration not known yet"))
            expect(estimate).to_contain_text("288")  # the training split of 360 rows
            shoot(page, artefacts, "2-parameters")

            page.get_by_role("button", name="Start training").click()
            expect(page.get_by_role("heading", name="Step 3 — Training")).to_be_visible()
            expect(page.locator("#job-h .state")).to_have_text(re.compile("Queued|Preparing|Running"), timeout=30_000)
            expect(page.get_by_role("log", name="Job events")).to_contain_text(re.compile("Queued|Preparing|Running"))
            shoot(page, artefacts, "3-training")
            page.get_by_role("button", name="Cancel training").click()
            expect(page.locator("#job-h .state")).to_have_text(re.compile("Cancell"), timeout=60_000)
        finally:
            page.screenshot(path=str(artefacts / "last.png"), full_page=True)

    # The funnel as the dashboard recorded it: two wizard runs (the broken file, then the
    # good one), each step once, the refused file under its step with its category.
    events = funnel_events(database_url, "dev", before)
    assert [(e["step"], bool(e["failure_category"])) for e in events] == [
        ("WIZARD_STARTED", False), ("DATASET_VALID", True),
        ("WIZARD_STARTED", False), ("DATASET_VALID", False), ("JOB_STARTED", False)]
    assert events[1]["resource"] == "broken.csv" and events[1]["failure_category"].isupper()
    assert events[3]["resource"].startswith("projects/dev/datasets/") and events[3]["step_seconds"] > 0
    assert events[4]["resource"].startswith("projects/dev/tuningJobs/")
