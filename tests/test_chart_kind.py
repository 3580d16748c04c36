"""kind and skaffold files (issue 20 item 12), checked statically: there is no docker,
kind or skaffold here. The node image is pinned by digest on a supported Kubernetes and
the chart's objects validate against that version; images are loaded with `docker save`
+ `kind load image-archive`; the e2e also runs an ephemeral Dask cluster, with install
flags the real Helm engine accepts; skaffold's default profile never pushes by itself."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import kubernetes_validate
import yaml

from mlops.config import Config
from mlops.kube.dask import build_dask_cluster
from mlops.kube.manifests import Owner, build_job
from tests.chart_render import ROOT, all_docs, by_kind, merge_values, render_chart, values_file

KIND_CONFIG = ROOT / "k8s" / "kind-config.yaml"
SCRIPT = ROOT / "scripts" / "kind-e2e.sh"
NODE_IMAGE = re.compile(r"kindest/node:v(1)\.(\d+)\.(\d+)@sha256:[0-9a-f]{64}")
#: The oldest Kubernetes minor still supported upstream when the pin was last moved
#: (December 2026: 1.35, 1.36, 1.37); raise it with the pin.
OLDEST_SUPPORTED_MINOR = 35


def _node_version() -> str:
    config = yaml.safe_load(KIND_CONFIG.read_text(encoding="utf-8"))
    (node,) = config["nodes"]
    found = NODE_IMAGE.fullmatch(node["image"])
    assert found, f"{node['image']}: pin kindest/node by tag and @sha256 digest"
    assert int(found.group(2)) >= OLDEST_SUPPORTED_MINOR, "an end-of-life Kubernetes"
    return f"1.{found.group(2)}.{found.group(3)}"


def test_the_kind_node_image_is_pinned_by_digest_on_a_supported_version() -> None:
    _node_version()


def _ephemeral_flags() -> dict[str, Any]:
    """The ephemeral mode's --set flags of scripts/kind-e2e.sh, parsed as helm does."""
    script = SCRIPT.read_text(encoding="utf-8")
    block = re.search(r"extra=\((--set.*?)\)\n", script, re.S)
    assert block, "the ephemeral mode's extra helm flags"
    values: dict[str, Any] = {}
    for expression in re.findall(r"--set\s+(\"[^\"]+\"|\S+)", block.group(1)):
        values = merge_values(values, helm_python.parse_set_string(expression.strip('"')))
    return values


def test_the_charts_objects_are_valid_on_the_kind_nodes_kubernetes() -> None:
    version = _node_version()
    owner = Owner("nightly-1", "3f1c6c1e-0000-4000-8000-000000000001")
    for values in ({}, values_file("values-dev.yaml"), values_file("values-prod.yaml"),
                   merge_values(values_file("values-dev.yaml"), _ephemeral_flags(),
                                {"networkPolicy": {"enabled": True}})):
        rendered = render_chart(values, name="mlops", namespace="mlops-ephemeral")
        for doc in all_docs(rendered):
            kubernetes_validate.validate(doc, version, strict=True)
        (cm,) = by_kind(rendered, "ConfigMap")
        config = Config.from_dict(yaml.safe_load(cm["data"]["config.yaml"]))
        for step in ("ingest", "monitor-check", "train"):
            job = build_job(config.kubernetes, "run-1", step, namespace="ns", owner=owner)
            kubernetes_validate.validate(job, version, strict=True)
        if config.dask.cluster == "ephemeral":
            cluster = build_dask_cluster(config.kubernetes, config.dask, "run-1",
                                         namespace="ns", owner=owner)
            for obj in cluster.objects:
                kubernetes_validate.validate(obj, version, strict=True)


def test_images_are_loaded_as_archives() -> None:
    for path in (SCRIPT, ROOT / "mk" / "deploy.mk"):
        text = path.read_text(encoding="utf-8")
        commands = [ln for ln in text.splitlines() if not ln.lstrip().startswith(("#", "@#"))]
        body = "\n".join(commands)
        assert "kind load docker-image" not in body, path  # kind#3795 with Docker 29
        assert re.search(r"docker save -o \S+ \S+", body), path
        assert re.search(r"kind load image-archive \S+ --name", body), path


def test_the_e2e_also_runs_an_ephemeral_dask_cluster() -> None:
    script = SCRIPT.read_text(encoding="utf-8")
    assert 'MODES="${MODES:-local ephemeral}"' in script
    values = merge_values(values_file("values-dev.yaml"), _ephemeral_flags())
    rendered = render_chart(values, name="mlops", namespace="mlops-ephemeral")
    (cm,) = by_kind(rendered, "ConfigMap")
    config = Config.from_dict(yaml.safe_load(cm["data"]["config.yaml"]))
    assert config.dask.cluster == "ephemeral" and config.data.engine == "dask"
    assert config.data.source == "/data/source/"
    # The claim the script creates is the one the chart mounts, ReadWriteMany, in the
    # namespace of the ephemeral release, bound to its volume.
    store = list(yaml.safe_load_all((ROOT / "k8s" / "kind-rwx-store.yaml").read_text(
        encoding="utf-8")))
    for doc in store:
        kubernetes_validate.validate(doc, _node_version(), strict=True)
    pv, pvc = (next(d for d in store if d["kind"] == k)
               for k in ("PersistentVolume", "PersistentVolumeClaim"))
    assert pvc["metadata"]["name"] == config.kubernetes.pod_template["volumes"][-1][
        "persistentVolumeClaim"]["claimName"]
    assert pvc["metadata"]["namespace"] == "mlops-ephemeral" == pv["spec"]["claimRef"][
        "namespace"]
    assert pvc["spec"]["accessModes"] == pv["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["volumeName"] == pv["metadata"]["name"]
    # ... which is the script's: ${NAMESPACE}-ephemeral with NAMESPACE's default.
    assert 'NAMESPACE="${NAMESPACE:-mlops}"' in script
    assert 'ns="${NAMESPACE}-ephemeral"' in script


def test_skaffold_never_pushes_by_default() -> None:
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text(encoding="utf-8"))
    # Unnamed registry: a push would go to Docker Hub (library/mlops).
    assert all("/" not in a["image"] for a in config["build"]["artifacts"])
    assert config["build"]["local"]["push"] is False
    for profile in config.get("profiles", []):
        local = profile.get("build", {}).get("local", {})
        assert local.get("push", False) is False, profile["name"]
