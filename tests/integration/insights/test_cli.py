"""``mtw insights …`` and ``client.insights`` against the real insights service."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

import mtw
from mtw.cli import app
from mtw.errors import NotFound, PermissionDenied

ENV = {"COLUMNS": "200", "MTW_API_KEY": "", "MTW_PROJECT": ""}


@pytest.fixture
def cli(insights):
    runner = CliRunner()
    endpoint = f"127.0.0.1:{insights.running.port}"

    async def invoke(who: str, *args: str):
        project = insights.projects[0] if who == "admin" else who
        # The sync CLI runs in a thread so this event loop keeps serving it.
        return await asyncio.to_thread(runner.invoke, app, [
            "--endpoint", endpoint, "--api-key", insights.keys[who], "--project", project, *args], env=ENV)

    return invoke


async def test_survey_answer_skip_and_refusals(cli, insights):
    project = insights.projects[1]
    result = await cli(project, "insights", "survey", "answer", "genres@1", "--overall", "5",
                       "--ease", "training=4", "--ease", "save=5", "--comment", "write to ana@example.org")
    assert result.exit_code == 0, result.output
    assert "5/5" in result.output and "[EMAIL]" in result.output and "ana@" not in result.output
    again = await cli(project, "insights", "survey", "answer", "genres@1", "--overall", "3")
    assert again.exit_code == 1 and "already exists" in again.output
    skipped = await cli(project, "insights", "survey", "skip", "genres@2")
    assert skipped.exit_code == 0 and "Skipped" in skipped.output
    bad = await cli(project, "insights", "survey", "answer", "genres@3", "--overall", "4", "--ease", "training")
    assert bad.exit_code == 2 and "STEP=1..5" in bad.output
    denied = await cli(project, "insights", "rollout", "show")
    assert denied.exit_code == 1 and "admin API key" in denied.output


async def test_sdk_survey_and_variant(insights):
    project = insights.projects[1]
    client = mtw.Client(f"127.0.0.1:{insights.running.port}", insights.keys[project], project=project)
    try:
        answer = await asyncio.to_thread(client.insights.answer_survey, "genres@7", 4,
                                         ease={"dataset": 3}, comment="call 0044 20 7946 0958")
        assert answer.overall == 4 and "[PHONE]" in answer.comment
        got = await asyncio.to_thread(client.insights.get_survey, f"projects/{project}/models/genres/versions/7")
        assert got.comment == answer.comment
        with pytest.raises(NotFound, match="no-such-experiment"):
            await asyncio.to_thread(client.insights.variant, "no-such-experiment")
        with pytest.raises(PermissionDenied, match="admin API key"):
            await asyncio.to_thread(client.insights.success_report)
        with pytest.raises(ValueError):
            client.insights.answer_survey("genres@8", 4, ease={"lunch": 2})
    finally:
        client.close()


async def test_admin_key_tool_makes_a_key_the_admin_api_accepts(insights, database_url):
    from services.insights_svc.admin_key import create_admin_key

    key = await create_admin_key(database_url, "ops-tool")
    client = mtw.Client(f"127.0.0.1:{insights.running.port}", key, project="ops-tool")
    try:
        config = await asyncio.to_thread(client.insights.set_rollout, contact="ops@mtw.example")
        assert config.contact == "ops@mtw.example" and config.rollout_percent == 100
    finally:
        await insights.running.pool.execute("DELETE FROM iam.rollout")
        insights.running.app.key_store.rollout.forget()
        client.close()
