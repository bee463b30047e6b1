"""The insights service against real PostgreSQL and a real gRPC server: admin-only
calls, the rollout changed at run time (seen by the dataset service too), stable and
recorded experiment assignments, the survey (once, skip, PII masked), the funnel,
the success report, and the metrics in an in-memory OpenTelemetry reader."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from mtw.dataset.v1 import dataset_service_pb2 as dpb
from mtw.dataset.v1 import dataset_service_pb2_grpc
from mtw.insights.v1 import experiment_pb2, funnel_pb2, rollout_config_pb2, survey_response_pb2
from mtw.insights.v1 import insights_service_pb2 as pb
from services.common import rollout
from services.common.interceptors import error_details
from services.dataset_svc import service as dataset_service
from services.dataset_svc.settings import DatasetSettings
from services.insights_svc import service
from tests.integration.insights.conftest import PRIMARY_EXPERIMENT, insights_settings

Step = survey_response_pb2.SurveyResponse.StepEase


@pytest.fixture(scope="module")
async def report_before(insights):
    """The report before this module's records (other modules share the database)."""
    return await insights.stub.GetSuccessReport(pb.GetSuccessReportRequest(name="successReport"),
                                                metadata=insights.auth("admin"))


async def _code(call) -> grpc.StatusCode:
    try:
        await call
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as err:
        return err.code()


async def _expect(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    return err.value


async def test_admin_calls_refuse_a_normal_key(insights):
    project = insights.projects[0]
    normal = insights.auth(project)
    calls = [
        insights.stub.GetRolloutConfig(pb.GetRolloutConfigRequest(name="rolloutConfig"), metadata=normal),
        insights.stub.UpdateRolloutConfig(pb.UpdateRolloutConfigRequest(
            rollout_config=rollout_config_pb2.RolloutConfig(rollout_percent=0),
            update_mask=field_mask_pb2.FieldMask(paths=["rollout_percent"])), metadata=normal),
        insights.stub.CreateExperiment(pb.CreateExperimentRequest(experiment_id="nope", experiment=(
            experiment_pb2.Experiment(variants=[experiment_pb2.Experiment.Variant(id="a", weight=1)]))),
            metadata=normal),
        insights.stub.ListExperiments(pb.ListExperimentsRequest(), metadata=normal),
        insights.stub.GetSuccessReport(pb.GetSuccessReportRequest(name="successReport"), metadata=normal),
    ]
    for call in calls:
        err = await _expect(call, grpc.StatusCode.PERMISSION_DENIED)
        assert error_details(err)[1].reason == "ADMIN_KEY_REQUIRED"
    # Nothing was changed by the refused update.
    config = await insights.stub.GetRolloutConfig(pb.GetRolloutConfigRequest(name="rolloutConfig"),
                                                  metadata=insights.auth("admin"))
    assert config.rollout_percent == 100 and config.revision == 0


async def test_rollout_changes_at_run_time_for_every_service(insights, service_settings):
    dataset = await dataset_service.start(service_settings(
        DatasetSettings, s3_bucket=f"mtw-test-{uuid.uuid4().hex[:8]}", service_name="dataset-svc"))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{dataset.port}")
    datasets = dataset_service_pb2_grpc.DatasetServiceStub(channel)
    beta, other = insights.projects
    admin = insights.auth("admin")

    def list_datasets(project):
        return datasets.ListDatasets(dpb.ListDatasetsRequest(parent=f"projects/{project}"),
                                     metadata=insights.auth(project))

    async def eventually(project, code, timeout=10.0):  # the dataset service re-reads every 5 s
        deadline = time.monotonic() + timeout
        while (got := await _code(list_datasets(project))) != code and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
        return got

    try:
        assert await _code(list_datasets(other)) == grpc.StatusCode.OK
        config = await insights.stub.UpdateRolloutConfig(pb.UpdateRolloutConfigRequest(
            rollout_config=rollout_config_pb2.RolloutConfig(
                name="rolloutConfig", rollout_percent=0, allowed_projects=[beta], contact="beta@mtw.example"),
            update_mask=field_mask_pb2.FieldMask(paths=["rollout_percent", "allowed_projects", "contact"])),
            metadata=admin)
        assert (config.rollout_percent, list(config.allowed_projects), config.revision) == (0, [beta], 1)
        assert await eventually(other, grpc.StatusCode.PERMISSION_DENIED) == grpc.StatusCode.PERMISSION_DENIED
        err = await _expect(list_datasets(other), grpc.StatusCode.PERMISSION_DENIED)
        assert err.details() == (f"the Model Training Wizard is not yet available to project '{other}'; "
                                 "ask beta@mtw.example")
        assert error_details(err)[1].reason == "WIZARD_NOT_AVAILABLE_FOR_PROJECT"
        assert await _code(list_datasets(beta)) == grpc.StatusCode.OK
        # The insights service applies its own change at once.
        await _expect(insights.stub.GetExperimentAssignment(pb.GetExperimentAssignmentRequest(
            name=f"projects/{other}/experimentAssignments/x"), metadata=insights.auth(other)),
            grpc.StatusCode.PERMISSION_DENIED)

        # Raise the share past `other`'s bucket: it gets in without any restart.
        percent = (rollout.project_bucket(other) + 1) / 100
        await insights.stub.UpdateRolloutConfig(pb.UpdateRolloutConfigRequest(
            rollout_config=rollout_config_pb2.RolloutConfig(rollout_percent=percent),
            update_mask=field_mask_pb2.FieldMask(paths=["rollout_percent"])), metadata=admin)
        assert await eventually(other, grpc.StatusCode.OK) == grpc.StatusCode.OK

        bad = await _expect(insights.stub.UpdateRolloutConfig(pb.UpdateRolloutConfigRequest(
            rollout_config=rollout_config_pb2.RolloutConfig(rollout_percent=101, allowed_projects=["Not OK"]),
            update_mask=field_mask_pb2.FieldMask(paths=["rollout_percent", "allowed_projects"])),
            metadata=admin), grpc.StatusCode.INVALID_ARGUMENT)
        assert {v.field for v in error_details(bad)[0].field_violations} == {
            "rollout_config.rollout_percent", "rollout_config.allowed_projects[0]"}
        audit = await insights.running.pool.fetch(
            "SELECT details FROM iam.audit_log WHERE action = 'rollout.update' ORDER BY id")
        assert [a["details"]["after"]["percent"] for a in audit][-2:] == [0, percent]
    finally:
        await insights.running.pool.execute("DELETE FROM iam.rollout")
        insights.running.app.key_store.rollout.forget()
        await channel.close()
        await dataset.stop()


async def _create_primary_experiment(insights):
    return await insights.stub.CreateExperiment(pb.CreateExperimentRequest(
        experiment_id=PRIMARY_EXPERIMENT, experiment=experiment_pb2.Experiment(
            description="which preset is pre-selected", variants=[
                experiment_pb2.Experiment.Variant(id="fast", weight=1, parameters={"preset": "fast"}),
                experiment_pb2.Experiment.Variant(id="quality", weight=3, parameters={"preset": "quality"}),
            ])), metadata=insights.auth("admin"))


async def test_experiment_assignment_is_stable_and_recorded(insights, service_settings):
    exp = await _create_primary_experiment(insights)
    assert exp.name == f"experiments/{PRIMARY_EXPERIMENT}" and len(exp.variants) == 2
    await _expect(_create_primary_experiment(insights), grpc.StatusCode.ALREADY_EXISTS)
    await insights.stub.CreateExperiment(pb.CreateExperimentRequest(
        experiment_id=f"{PRIMARY_EXPERIMENT}-recs", experiment=experiment_pb2.Experiment(
            variants=[experiment_pb2.Experiment.Variant(id="on", weight=1)])), metadata=insights.auth("admin"))
    listed = await insights.stub.ListExperiments(pb.ListExperimentsRequest(page_size=1),
                                                 metadata=insights.auth("admin"))
    assert len(listed.experiments) == 1 and listed.next_page_token
    token = listed.next_page_token
    rest = await insights.stub.ListExperiments(pb.ListExperimentsRequest(page_size=1, page_token=token),
                                               metadata=insights.auth("admin"))
    assert {listed.experiments[0].name, rest.experiments[0].name} >= {exp.name}
    found = await insights.stub.ListExperiments(pb.ListExperimentsRequest(
        filter='variants:"quality" AND description:"PRESET"'), metadata=insights.auth("admin"))
    assert exp.name in [e.name for e in found.experiments]
    none = await insights.stub.ListExperiments(pb.ListExperimentsRequest(filter='variants:"slow"'),
                                               metadata=insights.auth("admin"))
    assert exp.name not in [e.name for e in none.experiments]
    await _expect(insights.stub.ListExperiments(pb.ListExperimentsRequest(filter='owner="x"'),
                                                metadata=insights.auth("admin")), grpc.StatusCode.INVALID_ARGUMENT)
    await _expect(insights.stub.ListExperiments(pb.ListExperimentsRequest(page_token=token, filter='variants:"a"'),
                                                metadata=insights.auth("admin")), grpc.StatusCode.INVALID_ARGUMENT)
    project = insights.projects[0]
    name = f"projects/{project}/experimentAssignments/{PRIMARY_EXPERIMENT}"
    first = await insights.stub.GetExperimentAssignment(pb.GetExperimentAssignmentRequest(name=name),
                                                        metadata=insights.auth(project))
    assert first.variant in ("fast", "quality") and first.parameters["preset"] == first.variant
    row = await insights.running.pool.fetchrow(
        "SELECT variant, assign_time FROM insights.assignments WHERE project = $1 AND experiment_id = $2",
        project, PRIMARY_EXPERIMENT)
    assert row["variant"] == first.variant

    # Same answer after a restart of the service; the first record stays.
    again = await service.start(insights_settings(service_settings))
    try:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{again.port}")
        from mtw.insights.v1 import insights_service_pb2_grpc

        stub = insights_service_pb2_grpc.InsightsServiceStub(channel)
        second = await stub.GetExperimentAssignment(pb.GetExperimentAssignmentRequest(name=name),
                                                    metadata=insights.auth(project))
        await channel.close()
    finally:
        await again.stop()
    assert (second.variant, second.assign_time) == (first.variant, first.assign_time)
    assert await insights.running.pool.fetchval(
        "SELECT count(*) FROM insights.assignments WHERE project = $1", project) == 1
    # Another project's assignment is not ours to read; an unknown experiment is NOT_FOUND.
    await _expect(insights.stub.GetExperimentAssignment(pb.GetExperimentAssignmentRequest(
        name=f"projects/{insights.projects[1]}/experimentAssignments/{PRIMARY_EXPERIMENT}"),
        metadata=insights.auth(project)), grpc.StatusCode.NOT_FOUND)
    await _expect(insights.stub.GetExperimentAssignment(pb.GetExperimentAssignmentRequest(
        name=f"projects/{project}/experimentAssignments/no-such"), metadata=insights.auth(project)),
        grpc.StatusCode.NOT_FOUND)


async def test_survey_once_skip_and_masked_free_text(insights, report_before):
    project = insights.projects[0]
    version = f"projects/{project}/models/support-bot/versions/1"
    answer = survey_response_pb2.SurveyResponse(
        overall=4, step_ease=[Step(step=survey_response_pb2.WIZARD_STEP_DATASET, ease=5),
                              Step(step=survey_response_pb2.WIZARD_STEP_TRAINING, ease=2)],
        comment="Training was slow; mail me at jane.doe@example.com or call +1 415 555 0132")
    created = await insights.stub.CreateSurveyResponse(
        pb.CreateSurveyResponseRequest(parent=version, survey_response=answer), metadata=insights.auth(project))
    assert created.name == version + "/surveyResponse"
    assert "jane.doe" not in created.comment and "555" not in created.comment
    assert "[EMAIL]" in created.comment and "[PHONE]" in created.comment
    assert created.variants[PRIMARY_EXPERIMENT] in ("fast", "quality")
    stored = await insights.running.pool.fetchval(
        "SELECT comment FROM insights.survey_responses WHERE project = $1", project)
    assert stored == created.comment  # the plain text was never stored

    err = await _expect(insights.stub.CreateSurveyResponse(
        pb.CreateSurveyResponseRequest(parent=version, survey_response=answer), metadata=insights.auth(project)),
        grpc.StatusCode.ALREADY_EXISTS)
    assert "already exists" in err.details()
    got = await insights.stub.GetSurveyResponse(pb.GetSurveyResponseRequest(name=created.name),
                                                metadata=insights.auth(project))
    assert got.overall == 4 and {(s.step, s.ease) for s in got.step_ease} == {(1, 5), (2, 2)}

    skipped = await insights.stub.CreateSurveyResponse(pb.CreateSurveyResponseRequest(
        parent=f"projects/{project}/models/support-bot/versions/2",
        survey_response=survey_response_pb2.SurveyResponse(skipped=True)), metadata=insights.auth(project))
    assert skipped.skipped and skipped.overall == 0

    bad = await _expect(insights.stub.CreateSurveyResponse(pb.CreateSurveyResponseRequest(
        parent=f"projects/{project}/models/support-bot/versions/3",
        survey_response=survey_response_pb2.SurveyResponse(overall=9, step_ease=[Step(step=0, ease=0)])),
        metadata=insights.auth(project)), grpc.StatusCode.INVALID_ARGUMENT)
    assert {v.field for v in error_details(bad)[0].field_violations} == {
        "survey_response.overall", "survey_response.step_ease[0].step", "survey_response.step_ease[0].ease"}
    await _expect(insights.stub.CreateSurveyResponse(pb.CreateSurveyResponseRequest(
        parent=f"projects/{project}/models/support-bot/versions/3",
        survey_response=survey_response_pb2.SurveyResponse(skipped=True, overall=3)),
        metadata=insights.auth(project)), grpc.StatusCode.INVALID_ARGUMENT)
    # Another project's model version: NOT_FOUND, nothing stored.
    await _expect(insights.stub.GetSurveyResponse(pb.GetSurveyResponseRequest(name=created.name),
                                                  metadata=insights.auth(insights.projects[1])),
                  grpc.StatusCode.NOT_FOUND)
    await _expect(insights.stub.CreateSurveyResponse(pb.CreateSurveyResponseRequest(
        parent=version, survey_response=survey_response_pb2.SurveyResponse(skipped=True)),
        metadata=insights.auth(insights.projects[1])), grpc.StatusCode.NOT_FOUND)


def _points(reader, name):
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    return {tuple(sorted(p.attributes.items())): p for p in metric.data.data_points}
    return {}


async def test_funnel_report_and_metrics(insights, report_before):
    a, b = insights.projects
    steps = ["WIZARD_STARTED", "DATASET_VALID", "JOB_STARTED", "JOB_SUCCEEDED", "EVALUATION_VIEWED",
             "MODEL_SAVED"]
    for project, reached in ((a, steps), (b, steps[:3])):
        for step in reached:
            await insights.stub.RecordFunnelEvent(pb.RecordFunnelEventRequest(
                parent=f"projects/{project}", funnel_event=funnel_pb2.FunnelEvent(
                    step=funnel_pb2.FunnelStep.Value(f"FUNNEL_STEP_{step}"),
                    step_duration=duration_pb2.Duration(seconds=30))), metadata=insights.auth(project))
    await insights.stub.RecordFunnelEvent(pb.RecordFunnelEventRequest(
        parent=f"projects/{b}", funnel_event=funnel_pb2.FunnelEvent(
            step=funnel_pb2.FUNNEL_STEP_JOB_SUCCEEDED, failure_category="TRAINING_OOM")),
        metadata=insights.auth(b))
    await _expect(insights.stub.RecordFunnelEvent(pb.RecordFunnelEventRequest(
        parent=f"projects/{b}", funnel_event=funnel_pb2.FunnelEvent()), metadata=insights.auth(b)),
        grpc.StatusCode.INVALID_ARGUMENT)

    report = await insights.stub.GetSuccessReport(pb.GetSuccessReportRequest(name="successReport"),
                                                  metadata=insights.auth("admin"))
    # Other modules' records are in the same database: what this test added is the change.
    assert (report.models_created - report_before.models_created, report.models_target) == (1, 100)
    assert report.models_per_project[a] == 1 and b not in report.models_per_project
    end, start = report.target_end_time.ToDatetime(), report.target_start_time.ToDatetime()
    assert 181 <= (end - start).days <= 184
    funnel = {funnel_pb2.FunnelStep.Name(f.step): f for f in report.funnel}
    funnel_before = {funnel_pb2.FunnelStep.Name(f.step): f for f in report_before.funnel}

    def added(step: str, field: str) -> float:
        old = funnel_before.get(f"FUNNEL_STEP_{step}")
        return getattr(funnel[f"FUNNEL_STEP_{step}"], field) - (getattr(old, field) if old else 0)

    assert (added("JOB_STARTED", "projects"), added("JOB_SUCCEEDED", "projects")) == (2, 1)
    started, succeeded = funnel["FUNNEL_STEP_JOB_STARTED"], funnel["FUNNEL_STEP_JOB_SUCCEEDED"]
    assert succeeded.drop_off == pytest.approx(1 - succeeded.projects / started.projects)
    # Mean times in step are checked on a database of their own (tests/e2e/test_admin_page.py).
    failures = {k: v - report_before.failures_by_category.get(k, 0) for k, v in report.failures_by_category.items()}
    assert {k: v for k, v in failures.items() if v} == {"TRAINING_OOM": 1}
    groups = {s.group: s for s in report.satisfaction}
    variant = (await insights.running.pool.fetchval(
        "SELECT variant FROM insights.assignments WHERE project = $1", a))
    before = {s.group: s for s in report_before.satisfaction}.get("all")
    assert (groups["all"].responses, groups["all"].skips) == (
        (before.responses if before else 0) + 1, (before.skips if before else 0) + 1)
    per_variant = groups[f"{PRIMARY_EXPERIMENT}/{variant}"]  # only this module's project a is in it
    assert (per_variant.responses, per_variant.skips, per_variant.mean_overall) == (1, 1, 4)
    assert per_variant.mean_ease == {"DATASET": 5, "TRAINING": 2}
    assert per_variant.models_created == 1
    assert [c.text for c in report.comments] and "[EMAIL]" in report.comments[0].text

    # The same facts as OpenTelemetry metrics, with project and variant attributes.
    created = _points(insights.reader, "mtw.wizard.models_created")
    assert {k: p.value for k, p in created.items()} == {(("project", a), ("variant", variant)): 1}
    funnel_points = _points(insights.reader, "mtw.wizard.funnel_steps")
    assert funnel_points[(("project", b), ("step", "JOB_STARTED"), ("variant", "none"))].value == 1
    durations = _points(insights.reader, "mtw.wizard.step_duration")
    assert durations[(("project", a), ("step", "MODEL_SAVED"), ("variant", variant))].sum == 30
    failures = _points(insights.reader, "mtw.wizard.failures")
    assert list(failures) == [(("failure_category", "TRAINING_OOM"), ("project", b), ("step", "JOB_SUCCEEDED"),
                               ("variant", "none"))]
    overall = _points(insights.reader, "mtw.wizard.survey.overall")
    assert overall[(("project", a), ("variant", variant))].sum == 4
    ease = _points(insights.reader, "mtw.wizard.survey.ease")
    assert ease[(("project", a), ("step", "TRAINING"), ("variant", variant))].sum == 2
    skips = _points(insights.reader, "mtw.wizard.survey.skips")
    assert skips[(("project", a), ("variant", variant))].value == 1
