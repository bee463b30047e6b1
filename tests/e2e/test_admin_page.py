"""The dashboard's admin page against the whole system (``python -m devstack``).

Through the REST API: a scripted wizard funnel for two projects (one saves two models,
the other fails in training), an experiment whose variant one project is in, and survey
answers (a comment with an e-mail address in it, and a skip). Signed in with an admin
key, /admin — opened from the navigation by keyboard — shows exactly that: models
created against the target, the funnel step by step, the failure category,
satisfaction overall, per variant and per step, and the comment masked. Signed in with
a normal key, the page refuses clearly. Screenshots at laptop and phone width (no
sideways scroll) go to the artefact folder.

The module has its own database, so the report holds only what it recorded (and the
insights integration tests, which count the whole report, never see it).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.common import db
from services.common.auth import IAM_SCHEMA, KeyStore, migrate_iam
from tests.conftest import fresh_database
from tests.integration.training.service_harness import brown_csv

from .browser import CHROMIUM, browser_page, shoot, sign_in

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is missing: run make install")

ADMIN, SAVER, FAILER = "ops", "saver", "failer"  # projects; the saver saves two models
EXPERIMENT = "guidance"
# The experiment shapes the wizard (the gateway) and labels the metrics (insights).
DEVSTACK_ENV = {"INSIGHTS_PRIMARY_EXPERIMENT": EXPERIMENT}
PRESET_OF = {"guided": "balanced", "expert": "thorough"}  # neither is step 2's usual default
COMMENT = "Loved the presets. Mail me at jane.doe@example.com about the export."


@pytest.fixture(scope="module")
async def database_url() -> AsyncIterator[str]:
    """This module's own database (the system fixture starts on it)."""
    async with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
async def keys(database_url: str) -> dict[str, str]:
    """Project → a new API key: an admin key for ADMIN (what ``python -m
    services.insights_svc.admin_key`` makes), normal keys for the others."""
    pool = await db.create_pool(database_url, IAM_SCHEMA, max_size=2)
    try:
        await migrate_iam(pool)
        store = KeyStore(pool)
        made = {}
        for project in (ADMIN, SAVER, FAILER):
            await store.create_project(project)
            made[project] = await store.create_api_key(project, admin=project == ADMIN)
        return made
    finally:
        await pool.close()


def record(client: httpx.Client, keys: dict[str, str]) -> tuple[str, dict]:
    """The scripted wizard runs; returns the saver's variant and its (masked) answer."""
    def call(method: str, path: str, project: str, **kwargs) -> dict:
        response = client.request(method, path, headers={"authorization": f"Bearer {keys[project]}"}, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def step(project: str, name: str, seconds: int, failure: str = "") -> None:
        call("POST", f"/v1/projects/{project}/funnelEvents", project, json={
            "step": f"FUNNEL_STEP_{name}", "step_duration": f"{seconds}s", "failure_category": failure})

    for name, seconds in (("WIZARD_STARTED", 40), ("DATASET_VALID", 130), ("JOB_STARTED", 20),
                          ("JOB_SUCCEEDED", 610), ("EVALUATION_VIEWED", 35), ("MODEL_SAVED", 25),
                          ("MODEL_SAVED", 15)):
        step(SAVER, name, seconds)
    for name, seconds in (("WIZARD_STARTED", 20), ("DATASET_VALID", 70), ("JOB_STARTED", 10)):
        step(FAILER, name, seconds)
    step(FAILER, "JOB_SUCCEEDED", 300, "TRAINING_OOM")

    call("POST", "/v1/experiments", ADMIN, params={"experiment_id": EXPERIMENT}, json={
        "description": "Guided or expert settings", "variants": [{"id": v, "weight": 1, "parameters": {"preset": p}} for v, p in PRESET_OF.items()]})
    variant = call("GET", f"/v1/projects/{SAVER}/experimentAssignments/{EXPERIMENT}", SAVER)["variant"]

    def survey(project: str, version: int, answer: dict) -> dict:
        return call("POST", f"/v1/projects/{project}/models/genres/versions/{version}/surveyResponse", project, json=answer)

    answer = survey(SAVER, 1, {"overall": 5, "comment": COMMENT, "step_ease": [
        {"step": "WIZARD_STEP_DATASET", "ease": 4}, {"step": "WIZARD_STEP_TRAINING", "ease": 2}]})
    survey(SAVER, 2, {"overall": 2, "step_ease": [{"step": "WIZARD_STEP_DATASET", "ease": 3}]})
    survey(FAILER, 1, {"skipped": True})
    return variant, answer


def cells(rows) -> list[list[str]]:
    """A table body's rows as the texts of their cells."""
    return [rows.nth(i).locator("th, td").all_inner_texts() for i in range(rows.count())]


def test_admin_page_shows_what_was_recorded(system, keys: dict[str, str], artefacts: Path):
    from playwright.sync_api import expect, sync_playwright

    _, url = system
    with httpx.Client(base_url=url, timeout=60) as client:
        variant, answer = record(client, keys)
    assert "jane.doe@example.com" not in answer["comment"]

    with sync_playwright() as p, browser_page(p) as page:
        page.goto(url + "/signin")
        sign_in(page, ADMIN, keys[ADMIN])
        admin_link = page.get_by_role("navigation", name="Account").get_by_role("link", name="Admin")
        admin_link.focus()  # by keyboard
        page.keyboard.press("Enter")
        expect(page).to_have_url(url + "/admin")
        expect(admin_link).to_have_attribute("aria-current", "page")
        expect(page.get_by_role("heading", name="Custom models created")).to_be_visible()
        assert page.evaluate("document.activeElement.textContent") == "Success metrics"

        def section(heading: str):
            return page.locator("section", has=page.get_by_role("heading", name=heading, exact=True))

        # Models created against the target (100 in six months by default).
        models = section("Custom models created")
        expect(models.locator(".big-number")).to_have_text("2 of 100")
        expect(models.locator("progress")).to_have_attribute("value", "2")
        expect(models).to_contain_text("2 % of the target of 100 models between")
        expect(models.get_by_role("img", name=re.compile(r"^Models created per month\. \d{4}-\d{2}: 2$"))).to_be_visible()

        # The funnel: a chart with a text equivalent, and the table. Mean times: the
        # two projects' durations averaged; no dataset, job or model in the records.
        funnel = section("Wizard funnel")
        expect(funnel.get_by_role("img", name=re.compile(
            "^Projects reaching each step. Wizard started: 2, Dataset valid: 2, Job started: 2, "
            "Job succeeded: 1, Evaluation viewed: 1, Model saved: 1$"))).to_be_visible()
        assert cells(funnel.locator("tbody tr")) == [
            ["Wizard started", "2", "—", "30 s", "—"],
            ["Dataset valid", "2", "0.0 %", "2 min", "0"],
            ["Job started", "2", "0.0 %", "15 s", "0"],
            ["Job succeeded", "1", "50.0 %", "10 min", "0"],
            ["Evaluation viewed", "1", "0.0 %", "35 s", "—"],
            ["Model saved", "1", "0.0 %", "20 s", "0"],
        ]
        assert cells(section("Where failures cluster").locator("tbody tr")) == [["TRAINING_OOM", "1"]]

        # Satisfaction: 5 and 2 from the saver (in the variant), a skip from the other.
        satisfaction = section("Satisfaction")
        expect(satisfaction.locator(".big-number")).to_have_text("3.5 / 5")
        group = f"{EXPERIMENT} / {variant}"
        tables = satisfaction.locator("table")
        assert cells(tables.nth(0).locator("tbody tr"))[0] == ["Everyone", "2", "1", "3.5", "—"]
        assert cells(tables.nth(0).locator("tbody tr"))[-1] == [group, "2", "0", "3.5", "2"]
        assert tables.nth(1).locator("thead th").all_inner_texts() == ["Step", "Everyone", group]
        assert cells(tables.nth(1).locator("tbody tr")) == [
            ["Uploading your data", "3.5", "3.5"],
            ["Choosing parameters and training", "2.0", "2.0"],
            ["Reading the evaluation", "—", "—"],
            ["Saving and using the model", "—", "—"],
        ]

        # The comment as the service stored it: masked.
        comments = section("Comments")
        expect(comments.locator("blockquote")).to_have_text(answer["comment"])
        expect(comments).not_to_contain_text("jane.doe@example.com")

        # The rollout (never configured) and the experiment, read-only.
        rollout = section("Rollout and experiments")
        expect(rollout).to_contain_text("Everyone (no rollout configured)")
        expect(rollout.get_by_role("listitem")).to_contain_text("Variants: guided (50 %), expert (50 %)")
        shoot(page, artefacts, "admin-report")
        page.reload()  # the page's own URL loads it too (a bookmark, a shared link)
        expect(models.locator(".big-number")).to_have_text("2 of 100")

        # A normal key: a clear refusal, not an empty page.
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(url + "/signin")
        sign_in(page, SAVER, keys[SAVER])
        expect(page.get_by_role("button", name="Create Custom Model")).to_be_visible()
        expect(page.get_by_role("link", name="Admin")).to_have_count(0)  # offered to admin keys only
        page.goto(url + "/admin")  # typed in by hand
        refusal = page.get_by_role("alert")
        expect(refusal).to_contain_text("This page needs an admin API key")
        expect(refusal).to_contain_text(f"signed in to project {SAVER}")
        expect(section("Custom models created")).to_have_count(0)
        shoot(page, artefacts, "admin-refused")


def test_step_two_starts_from_the_presets_the_variant_names(system, keys: dict[str, str]):
    """The saver's variant of the wizard's experiment names a preset: step 2 starts there."""
    from playwright.sync_api import expect, sync_playwright

    _, url = system
    auth = {"authorization": f"Bearer {keys[SAVER]}"}
    with httpx.Client(base_url=url, timeout=120, headers=auth) as client:
        variant = client.get(f"/v1/projects/{SAVER}/experimentAssignments/{EXPERIMENT}").json()["variant"]
        dataset = client.post(f"/v1/projects/{SAVER}/datasets", params={"dataset_id": "genres"}, json={}).json()
        version = client.post(f"/v1/{dataset['name']}/versions:upload", content=brown_csv(120),
                              params={"header.options.file_name": "genres.csv"})
        assert version.status_code == 200, version.text
    with sync_playwright() as p, browser_page(p) as page:
        page.goto(url + "/signin")
        sign_in(page, SAVER, keys[SAVER])
        expect(page.get_by_role("button", name="Create Custom Model")).to_be_visible()
        page.evaluate("state => sessionStorage.setItem('mtw.wizard', JSON.stringify(state))",
                      {"version": version.json()["name"], "datasetName": "Genres"})
        page.goto(url + "/wizard/parameters")
        expect(page.get_by_role("heading", name="Step 2 — Training settings")).to_be_visible()
        expect(page.get_by_role("radio", name=re.compile(f"^{PRESET_OF[variant]}", re.IGNORECASE))).to_be_checked()
