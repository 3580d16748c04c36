"""Workload controllers of the fake: ReplicaSets, the Dask operator's DaskCluster, the
TTL-after-finished controller of Jobs, the garbage collector for their dependents, eviction
and ``kubectl drain``.

A real cluster's controllers run beside the API server; here one background thread
(:meth:`Workloads._controllers`) reconciles every 50 ms:

* **ReplicaSet** (``apps/v1``): keeps ``spec.replicas`` active pods from its template
  (``generateName: <rs>-``, an ownerReference with ``controller: true``); a pod that was
  deleted, evicted or has ended is replaced; extra pods are deleted. Status carries
  ``replicas``, ``readyReplicas``, ``availableReplicas``.
* **DaskCluster** (``kubernetes.dask.org/v1``), answering like the dask-kubernetes operator:
  a scheduler Service ``<name>-scheduler`` (the spec's ``scheduler.service``, selecting the
  scheduler pod), a scheduler workload ``<name>-scheduler`` and a worker workload
  ``<name>-default-worker`` of ``spec.worker.replicas`` (ReplicaSets here, Deployments in
  the operator), the operator's labels (``dask.org/cluster-name``, ``dask.org/component``)
  and env (``DASK_SCHEDULER_ADDRESS``, ``DASK_WORKER_NAME``); ``status.phase`` is
  ``Created``, then ``Running`` once the scheduler pod is Ready.
* **TTL after finished** (``batch/v1`` Jobs): a Job with ``spec.ttlSecondsAfterFinished``
  whose ``Complete`` or ``Failed`` condition is older than that is deleted, its pods with it
  (the real controller deletes with ``Foreground`` propagation, which the fake does not
  have: ``Background`` leaves the same objects behind once it is done); the garbage
  collector then removes what it owned (ReplicaSets, a DaskCluster, Services).
* **Garbage collector**: an object whose every owner has been deleted is deleted too
  (pods gracefully), as with ``propagationPolicy: Background``.
* :meth:`evict_pod`: the Eviction API - the pod gets ``DisruptionTarget`` and is deleted
  with its grace period. :meth:`drain`: ``kubectl drain`` of the one fake node: refuses
  (raises :class:`DrainRefused`) when a pod has no controller owner, unless ``force``,
  then evicts every pod.
"""

from __future__ import annotations

import copy
import datetime
import threading
import time

from tests.fakes.kube.kubelet import Kubelet, _is_ready, add_condition
from tests.fakes.kube.model import JSON, KINDS, KubeAPIError, utc_timestamp
from tests.fakes.kube.selectors import Selector

#: How often the controllers reconcile, seconds.
RECONCILE_SECONDS = 0.05
DASK_PORT = 8786
#: The objects the garbage collector looks after (Jobs collect their own pods).
_COLLECTED = ("pods", "services", "replicasets", "daskclusters")


class DrainRefused(Exception):
    """``kubectl drain`` refused: pods without a controller (the tool's own wording)."""


def controller_of(obj: JSON) -> JSON | None:
    """The ownerReference with ``controller: true``, or None."""
    return next((r for r in obj["metadata"].get("ownerReferences") or []
                 if r.get("controller")), None)


def finish_time(job: JSON) -> float | None:
    """When the Job finished (its ``Complete`` or ``Failed`` condition's
    ``lastTransitionTime``, epoch seconds), or None while it runs."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            stamp = datetime.datetime.strptime(str(cond["lastTransitionTime"]),
                                               "%Y-%m-%dT%H:%M:%SZ")
            return stamp.replace(tzinfo=datetime.UTC).timestamp()
    return None


class Workloads(Kubelet):
    """ReplicaSets, DaskClusters, garbage collection, eviction and drain."""

    _gone_uids: set[str]
    _controller_thread: threading.Thread | None

    def _put(self, resource: str, namespace: str, obj: JSON, event: str) -> JSON:
        if event == "DELETED":
            with self._lock:
                if not hasattr(self, "_gone_uids"):
                    self._gone_uids = set()
                self._gone_uids.add(str(obj["metadata"].get("uid")))
        return super()._put(resource, namespace, obj, event)

    def _start_controllers(self) -> None:
        self._controller_thread = threading.Thread(target=self._controllers,
                                                   name="fake-controllers", daemon=True)
        self._controller_thread.start()

    def _join_controllers(self, timeout: float) -> None:
        thread = getattr(self, "_controller_thread", None)
        if thread is not None:
            thread.join(timeout)

    def _controllers(self) -> None:
        while not self._stopping.wait(RECONCILE_SECONDS):
            try:
                for cluster in self._list("daskclusters", None, None):
                    self._reconcile_dask_cluster(cluster)
                for rs in self._list("replicasets", None, None):
                    self._reconcile_replica_set(rs)
                for job in self._list("jobs", None, None):
                    self._expire_finished_job(job)
                self._collect_garbage()
            except KubeAPIError as err:  # e.g. a namespace removed under it
                self.kubelet_errors.append(f"controllers: {err}")

    # --------------------------------------------------------------- ReplicaSet
    def _owned(self, resource: str, ns: str, uid: str) -> list[JSON]:
        return [o for o in self._list(resource, ns, None)
                if (controller_of(o) or {}).get("uid") == uid]

    def _reconcile_replica_set(self, rs: JSON) -> None:
        meta, spec = rs["metadata"], rs["spec"]
        ns, uid = meta["namespace"], meta["uid"]
        if meta.get("deletionTimestamp"):
            return
        pods = self._owned("pods", ns, uid)
        active = [p for p in pods if not p["metadata"].get("deletionTimestamp")
                  and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
        for pod in pods:  # an ended pod is removed (and replaced below)
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") \
                    and not pod["metadata"].get("deletionTimestamp"):
                with self._lock:
                    self._delete_pod(pod)
        want = int(spec.get("replicas", 1))
        for _ in range(want - len(active)):
            if not self._exists("replicasets", ns, meta["name"], uid):
                return  # deleted since it was listed: nothing to replace
            template = copy.deepcopy(spec["template"])
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {**template.get("metadata", {}),
                                "generateName": f"{meta['name']}-", "namespace": ns,
                                "ownerReferences": [{
                                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                                    "name": meta["name"], "uid": uid, "controller": True,
                                    "blockOwnerDeletion": True}]},
                   "spec": template["spec"]}
            self._create(KINDS["pods"], ns, pod, admit=False)
        for pod in sorted(active, key=lambda p: p["metadata"]["name"])[want:]:
            with self._lock:
                self._delete_pod(pod)
        ready = sum(1 for p in active[:want] if _is_ready(p))
        status = {"replicas": min(len(active), want) if active else 0, "readyReplicas": ready,
                  "availableReplicas": ready, "fullyLabeledReplicas": len(active),
                  "observedGeneration": meta.get("generation", 1)}
        if rs.get("status") != status:
            self._update("replicasets", ns, meta["name"], uid,
                         lambda o: o.__setitem__("status", status))

    def _exists(self, resource: str, ns: str, name: str, uid: str) -> bool:
        with self._lock:
            current = self._objects.get((resource, ns, name))
            return current is not None and current["metadata"]["uid"] == uid \
                and not current["metadata"].get("deletionTimestamp")

    # --------------------------------------------------------------- DaskCluster
    def _reconcile_dask_cluster(self, cluster: JSON) -> None:
        meta, spec = cluster["metadata"], cluster["spec"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        owner = {"apiVersion": "kubernetes.dask.org/v1", "kind": "DaskCluster", "name": name,
                 "uid": uid, "controller": True, "blockOwnerDeletion": True}
        service = f"{name}-scheduler"
        address = f"tcp://{service}.{ns}.svc.cluster.local:{DASK_PORT}"
        labels = {"dask.org/cluster-name": name}
        if not self._exists("daskclusters", ns, name, uid):
            return
        if self.get_object("services", ns, service) is None:
            svc_spec = copy.deepcopy(spec["scheduler"].get("service") or {})
            svc_spec.setdefault("selector", {**labels, "dask.org/component": "scheduler"})
            self._create(KINDS["services"], ns, {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": service, "namespace": ns, "ownerReferences": [owner],
                             "labels": {**labels, "dask.org/component": "scheduler"}},
                "spec": svc_spec}, admit=False)
        scheduler_ready = any(
            _is_ready(p) for p in self._list("pods", ns, Selector(
                "pods", f"dask.org/cluster-name={name},dask.org/component=scheduler", None)))
        for component, rs_name, replicas, pod_spec in (
                ("scheduler", f"{name}-scheduler", 1, spec["scheduler"]["spec"]),
                ("worker", f"{name}-default-worker", int(spec["worker"].get("replicas", 1)),
                 spec["worker"]["spec"])):
            if self.get_object("replicasets", ns, rs_name) is not None:
                continue
            if component == "worker" and not scheduler_ready:
                # The operator creates them at once and they retry until the scheduler's
                # name resolves; the fake's DNS resolves once, when a process starts.
                continue
            pod_labels = {**labels, "dask.org/component": component}
            if component == "worker":
                pod_labels["dask.org/workergroup-name"] = "default"
            pod_spec = copy.deepcopy(pod_spec)
            for container in pod_spec.get("containers") or []:
                env = container.setdefault("env", [])
                env.append({"name": "DASK_SCHEDULER_ADDRESS", "value": address})
                if component == "worker":
                    env.append({"name": "DASK_WORKER_NAME", "valueFrom": {
                        "fieldRef": {"fieldPath": "metadata.name"}}})
            self._create(KINDS["replicasets"], ns, {
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": rs_name, "namespace": ns, "ownerReferences": [owner],
                             "labels": pod_labels},
                "spec": {"replicas": replicas, "selector": {"matchLabels": pod_labels},
                         "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec}},
            }, admit=False)
        phase = "Running" if scheduler_ready else "Created"
        if (cluster.get("status") or {}).get("phase") != phase:
            self._update("daskclusters", ns, name, uid,
                         lambda o: o.__setitem__("status", {"phase": phase}))

    # --------------------------------------------------------------- TTL after finished
    def _expire_finished_job(self, job: JSON) -> None:
        """Delete a finished Job once ``ttlSecondsAfterFinished`` has passed since its
        ``Complete``/``Failed`` condition (as the TTL-after-finished controller does)."""
        meta = job["metadata"]
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        finished = finish_time(job)
        if ttl is None or finished is None or meta.get("deletionTimestamp") \
                or time.time() < finished + int(ttl):
            return
        ns, name = meta["namespace"], meta["name"]
        if not self._exists("jobs", ns, name, meta["uid"]):
            return  # deleted (or replaced by a Job of the same name) since it was listed
        try:
            self._delete(KINDS["jobs"], ns, name, "Background")
        except KubeAPIError as err:
            if err.code != 404:
                raise

    # --------------------------------------------------------------- garbage collector
    def _collect_garbage(self) -> None:
        gone: set[str] = getattr(self, "_gone_uids", set())
        if not gone:
            return
        for resource in _COLLECTED:
            for obj in self._list(resource, None, None):
                refs = obj["metadata"].get("ownerReferences") or []
                if not refs or not all(str(r.get("uid")) in gone for r in refs) \
                        or obj["metadata"].get("deletionTimestamp"):
                    continue
                ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
                with self._lock:
                    current = self._objects.get((resource, ns, name))
                    if current is None or current["metadata"]["uid"] != obj["metadata"]["uid"]:
                        continue
                    if resource == "pods":
                        run = self._runs.get(current["metadata"]["uid"])
                        if run is None or not run.bare:
                            continue  # a Job's pod: collected with its Job
                        self._delete_pod(current)
                    else:
                        self._put(resource, ns, copy.deepcopy(current), "DELETED")

    # --------------------------------------------------------------- eviction and drain
    def evict_pod(self, namespace: str, name: str) -> JSON:
        """The Eviction API: mark the pod ``DisruptionTarget`` (reason
        ``EvictionByEvictionAPI``) and delete it with its grace period."""
        with self._lock:
            pod = self._objects.get(("pods", namespace, name))
            if pod is None:
                raise KubeAPIError(404, "NotFound", f'pods "{name}" not found')
            pod = copy.deepcopy(pod)
            add_condition(pod, {"type": "DisruptionTarget", "status": "True",
                                "reason": "EvictionByEvictionAPI",
                                "message": "Eviction API: evicting",
                                "lastTransitionTime": utc_timestamp()})
            self._put("pods", namespace, pod, "MODIFIED")
            run = self._runs.get(pod["metadata"]["uid"])
            if run is not None and not run.bare:
                run.evict_pod = name  # a Job's pod: the kubelet stops it
                return pod
            return self._delete_pod(pod)

    def drain(self, namespace: str | None = None, force: bool = False,
              timeout: float = 30.0) -> list[str]:
        """``kubectl drain fake-node`` (``--ignore-daemonsets --delete-emptydir-data``).

        Raises:
            DrainRefused: Pods without a controller owner and not ``force`` (nothing is
                evicted, as kubectl checks every pod first).

        Returns:
            The evicted pods (``namespace/name``), once they are gone (bounded).
        """
        pods = [p for p in self._list("pods", namespace, None)
                if not p["metadata"].get("deletionTimestamp")
                and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
        bare = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods
                if controller_of(p) is None]
        if bare and not force:
            raise DrainRefused("cannot delete Pods that declare no controller (use --force "
                               "to override): " + ", ".join(bare))
        names = []
        for pod in pods:
            meta = pod["metadata"]
            self.evict_pod(meta["namespace"], meta["name"])
            names.append(f"{meta['namespace']}/{meta['name']}")
        deadline = time.monotonic() + timeout
        uids = {p["metadata"]["uid"] for p in pods}
        while time.monotonic() < deadline:
            with self._lock:
                left = [o for (r, _, _), o in self._objects.items()
                        if r == "pods" and o["metadata"]["uid"] in uids
                        and o.get("status", {}).get("phase") not in ("Succeeded", "Failed")]
            if not left:
                break
            time.sleep(0.05)
        return names


__all__ = ["DrainRefused", "Workloads", "controller_of", "finish_time"]
