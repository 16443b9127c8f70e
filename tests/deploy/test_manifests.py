"""The Kubernetes manifests in deploy/k8s pass schema validation (kubernetes-validate, which
bundles the schemas and works offline; strict: no unknown fields), and agree with each other,
with the server and with the Dockerfile: probes and scrape annotations name real routes on the
container's port, the Service reaches that port on these pods, the container's arguments are
valid `allama serve` flags listening there, the model is on the mounted claim, and the pod runs
as the image's user with as many threads as whole CPUs it is given."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from fastapi.routing import APIRoute

from allama.server.cli import settings_from_args
from allama.server.routes import router

from ..paths import REPO_ROOT

MANIFESTS = sorted((REPO_ROOT / "deploy" / "k8s").glob("*.yaml"))
GET_ROUTES = {r.path for r in router.routes if isinstance(r, APIRoute) and "GET" in r.methods}


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resources() -> dict[str, dict[str, Any]]:
    """Every manifest's resources by kind (one of each here)."""
    found: dict[str, dict[str, Any]] = {}
    for path in MANIFESTS:
        for doc in documents(path):
            assert doc["kind"] not in found, f"a second {doc['kind']} in {path.name}"
            found[doc["kind"]] = doc
    return found


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    return resources()


@pytest.fixture(scope="module")
def container(manifests) -> dict[str, Any]:
    (only,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def container_port(container: dict[str, Any], port: int | str) -> int:
    """A port given by number or by name, as the container's port number."""
    for entry in container["ports"]:
        if port in (entry["containerPort"], entry.get("name")):
            return entry["containerPort"]
    raise AssertionError(f"the container has no port {port!r}")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_each_manifest_passes_strict_schema_validation(path):
    version = kubernetes_validate.latest_version()
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)  # raises ValidationError


def test_the_expected_resources_are_there(manifests):
    assert {"Deployment", "Service", "PersistentVolumeClaim"} <= set(manifests)


def test_the_probes_check_health_on_the_containers_port(container):
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/health" and check["path"] in GET_ROUTES
        container_port(container, check["port"])


def test_the_service_reaches_the_pods_port(manifests, container):
    service, deployment = manifests["Service"], manifests["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert container_port(container, port["targetPort"]) == container_port(container, "http")


def test_the_container_arguments_are_server_flags_listening_on_its_port(manifests, container):
    settings = settings_from_args(container["args"])
    assert settings.host == "0.0.0.0"
    assert settings.port == container_port(container, "http")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in manifests["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    (volume,) = [name for name, mount in mounts.items() if settings.model.startswith(mount + "/")]
    assert volumes[volume]["persistentVolumeClaim"]["claimName"] == manifests["PersistentVolumeClaim"]["metadata"][
        "name"]
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_grace_seconds  # drains before SIGKILL


def test_threads_match_whole_cpus_requested_and_limited(container):
    settings = settings_from_args(container["args"])
    resources = container["resources"]
    assert resources["requests"] == resources["limits"]  # the Guaranteed QoS class
    assert str(settings.n_threads) == resources["limits"]["cpu"]


def test_prometheus_scrapes_metrics_on_the_containers_port(manifests, container):
    annotations = manifests["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics" and "/metrics" in GET_ROUTES
    assert int(annotations["prometheus.io/port"]) == container_port(container, "http")


def test_the_pod_runs_as_the_user_the_image_creates(manifests):
    security = manifests["Deployment"]["spec"]["template"]["spec"]["securityContext"]
    uid = re.search(r"useradd .*--uid (\d+)", (REPO_ROOT / "Dockerfile").read_text())
    assert uid is not None and security["runAsUser"] == int(uid.group(1)) and security["runAsNonRoot"]
