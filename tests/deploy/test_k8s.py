"""The Kubernetes manifests (``deploy/k8s``, Kustomize): every object validates against the Kubernetes API
schemas (strict: an unknown or misspelt field fails), as written and as rendered for the base and the gpu
overlay, and the rendered objects fit together: the autoscaler scales the gateway, the probes run the health
command the image has, Triton gets a GPU only in the gpu overlay, secrets are referenced but never committed."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from lineqa import db_cli
from lineqa.serving import health_cli
from lineqa.serving.references import references_of
from tests.deploy.triton_release import check_command, check_release

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"  # a schema kubernetes-validate ships; the manifests use only GA APIs
Manifest = dict[str, Any]


def documents(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(overlay: str) -> list[Manifest]:
    """What ``kubectl apply -k`` would send: ``kubectl kustomize`` (Kustomize is built into kubectl)."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl (with its built-in Kustomize) is not installed: the overlays cannot be rendered")
    done = subprocess.run(["kubectl", "kustomize", str(K8S / overlay)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return documents(done.stdout)


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].startswith(name)]
    return found


def container(manifests: list[Manifest], deployment: str) -> Manifest:
    spec = find(manifests, "Deployment", deployment)["spec"]["template"]["spec"]
    first: Manifest = spec["containers"][0]
    return first


def validate_all(manifests: list[Manifest]) -> None:
    for manifest in manifests:
        where = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{where}: {exc.message} at {list(exc.path)}") from None


def test_every_base_manifest_as_written_validates() -> None:
    """Without kubectl too: each file of the base on its own (the gpu overlay's patch is partial by nature;
    it is checked once rendered)."""
    written = [
        doc
        for path in sorted((K8S / "base").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in documents(path.read_text())
    ]
    assert len(written) >= 14
    validate_all(written)


@pytest.mark.parametrize("overlay", ["base", "overlays/gpu"])
def test_rendered_overlay_validates(overlay: str) -> None:
    manifests = render(overlay)
    validate_all(manifests)
    namespaced = [m for m in manifests if m["kind"] != "Namespace"]
    assert {m["metadata"].get("namespace") for m in namespaced} == {"lineqa"}
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Ingress", "PersistentVolumeClaim"} <= kinds


def test_gateway_scales_and_probes_the_grpc_health_service() -> None:
    manifests = render("base")
    hpa = find(manifests, "HorizontalPodAutoscaler", "lineqa-gateway")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "lineqa-gateway"}
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    gateway = container(manifests, "lineqa-gateway")
    assert gateway["resources"]["requests"]["cpu"]  # utilisation targets need a request

    probes = {kind: gateway[kind]["exec"]["command"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    parser = argparse.ArgumentParser()
    health_cli.configure(parser)
    for kind, command in probes.items():
        assert command[:2] == ["lineqa", "health"]
        args = parser.parse_args(command[2:])  # options the image's health command really has
        assert args.alive == (kind != "readinessProbe"), "liveness must not depend on Triton; readiness must"
        assert args.timeout_s < gateway[kind]["timeoutSeconds"]

    env = {e["name"]: e for e in gateway["env"]}
    assert env["LINEQA_TRITON_URL"]["value"] == "lineqa-triton:8001"
    assert env["LINEQA_DB"]["valueFrom"]["secretKeyRef"] == {"name": "lineqa-database", "key": "url"}
    mounts = {m["mountPath"]: m for m in gateway["volumeMounts"]}
    assert mounts["/var/lib/lineqa/pki"]["readOnly"] and mounts["/var/lib/lineqa/models"]["readOnly"]
    # Recipes are audited records in the database: no file of them is mounted for anyone to edit by hand.
    assert not [m for m in manifests if m["kind"] == "ConfigMap"] and "/var/lib/lineqa/recipes" not in mounts


def test_what_one_gateway_replica_stores_for_the_others_is_on_shared_storage() -> None:
    """A golden sample stored through one replica (``AddReference``, ``lineqa references add``) is what every
    replica compares frames with, and a flagged image one writes is what the review app shows: both are on
    ReadWriteMany claims, at the paths the gateway uses, never in the pod's own home (an emptyDir)."""
    manifests = render("base")
    spec = find(manifests, "Deployment", "lineqa-gateway")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    claims = {m["metadata"]["name"]: m["spec"] for m in manifests if m["kind"] == "PersistentVolumeClaim"}
    home = Path(next(e["value"] for e in spec["containers"][0]["env"] if e["name"] == "LINEQA_HOME"))
    assert "emptyDir" in volumes[mounts[str(home)]]
    for shared in (references_of(home).root, home / "images"):  # as 'lineqa serve' opens them (serve_cli)
        claim = volumes[mounts[str(shared)]]["persistentVolumeClaim"]["claimName"]
        assert claims[claim]["accessModes"] == ["ReadWriteMany"], shared


def test_the_owner_migrates_and_the_services_log_in_as_the_application_role() -> None:
    manifests = render("base")
    job = find(manifests, "Job", "lineqa-db-migrate")["spec"]["template"]["spec"]["containers"][0]
    parser = argparse.ArgumentParser()
    db_cli.configure(parser)
    args = parser.parse_args(job["args"][1:])  # options 'lineqa db' really has
    assert job["args"][0] == "db" and args.action == "migrate" and args.app_password_env
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in job["env"] if "valueFrom" in e}
    assert env["LINEQA_DB_OWNER"] == {"name": "lineqa-database", "key": "owner-url"}
    assert env[args.app_password_env] == {"name": "lineqa-database", "key": "app-password"}
    for service in ("lineqa-gateway", "lineqa-review"):  # the URL whose user is lineqa_app (kustomization.yaml)
        url = {e["name"]: e for e in container(manifests, service)["env"]}["LINEQA_DB"]["valueFrom"]["secretKeyRef"]
        assert url == {"name": "lineqa-database", "key": "url"}
    assert "url=postgresql+psycopg://lineqa_app:" in (K8S / "base" / "kustomization.yaml").read_text()


def test_secrets_are_referenced_never_committed() -> None:
    manifests = render("base")
    assert not [m for m in manifests if m["kind"] == "Secret"]
    text = "\n".join(p.read_text() for p in K8S.rglob("*.yaml"))
    assert "secretName: lineqa-tls" in text and "name: lineqa-database" in text
    assert "BEGIN" not in text and not re.search(r"(?i)password\s*[:=]\s*[^\s.}]", text)
    assert not re.search(r"//\w+:[^@.]+@", text)  # no credentials in a URL (the docs' placeholders are '...')


def test_triton_reads_the_repository_and_gets_a_gpu_only_in_the_gpu_overlay() -> None:
    base, gpu = render("base"), render("overlays/gpu")
    for manifests in (base, gpu):
        triton = container(manifests, "lineqa-triton")
        assert triton["command"] == ["sh", "-c"] and "--model-repository=/models" in triton["args"][0]
        check_command(triton["args"][0])
        assert check_release(triton["image"]) >= (25, 10)
        assert {"name": "models", "mountPath": "/models", "readOnly": True} in triton["volumeMounts"]
        assert "nvidia.com/gpu" not in container(manifests, "lineqa-gateway")["resources"].get("limits", {})
    assert "nvidia.com/gpu" not in container(base, "lineqa-triton")["resources"]["limits"]
    assert container(gpu, "lineqa-triton")["resources"]["limits"]["nvidia.com/gpu"] == 1
    spec = find(gpu, "Deployment", "lineqa-triton")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"][0]["key"] == "nvidia.com/gpu"
