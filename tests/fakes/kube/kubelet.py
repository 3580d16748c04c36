"""The "kubelet": runs each Job's pod as a local subprocess and writes Job and pod status."""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.fakes.kube.model import (
    JSON,
    KINDS,
    JobRun,
    not_found_error,
    random_suffix,
    utc_timestamp,
)
from tests.fakes.kube.selectors import Selector
from tests.fakes.kube.store import ObjectStore

LOG_LIMIT_BYTES = 1024 * 1024
DEADLINE_MESSAGE = "Job was active longer than specified deadline"
_MAX_ATTEMPTS = 200
_VAR_REF = re.compile(r"\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
#: What a process on the fake node reads as its CPU count (see tests.fakes.kube.node).
NODE_CPUS_ENV = "FAKE_NODE_CPUS"
_FIELD_REF = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")
#: A Service's DNS name in an env value or argument: <service>.<namespace>.svc[.cluster.local].
_SERVICE_DNS = re.compile(r"(?<![-.a-z0-9])([a-z]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*"
                          r"[a-z0-9])?)\.svc(\.cluster\.local)?(?![-a-z0-9])")
#: Restarts of a pod's container (restartPolicy Always/OnFailure) before the fake gives up.
_MAX_RESTARTS = 20


class Kubelet(ObjectStore):
    """Job execution: pods as subprocesses, retries, deadlines, pod failure policy."""

    def _start_job(self, run: JobRun) -> None:
        run.thread = threading.Thread(target=self._run_job, args=(run,),
                                      name=f"kubelet-{run.name}", daemon=True)
        run.thread.start()

    def _start_pod(self, run: JobRun) -> None:
        run.thread = threading.Thread(target=self._run_bare_pod, args=(run,),
                                      name=f"kubelet-pod-{run.name}", daemon=True)
        run.thread.start()

    def _run_bare_pod(self, run: JobRun) -> None:
        """Run a pod created through the API: its own IP on the loopback network, its first
        container as a subprocess restarted per ``restartPolicy``, Ready after its
        ``tcpSocket`` readiness probe connects (at once without a probe); deleted (the
        object removed) once the process has stopped after a delete."""
        ns, name, uid = run.namespace, run.name, run.uid
        pod = self.get_object("pods", ns, name)
        if pod is None:
            return
        # Each pod gets an address of its own in 127.0.0.0/8 (all of it is the loopback
        # interface on Linux), so two pods can listen on the same port like on a cluster.
        ip = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        container = pod["spec"]["containers"][0]
        cname = container["name"]
        now = utc_timestamp()
        short = self._insufficient(pod)
        if short:
            # The scheduler cannot place it and no autoscaler adds a node: Pending for good.
            lacking = ", ".join(f"1 Insufficient {r}" for r in short)
            message = (f"0/1 nodes are available: {lacking}. preemption: 0/1 nodes are "
                       "available: 1 No preemption victims found for incoming pod.")
            self._update("pods", ns, name, uid, lambda p: p["status"].update(conditions=[{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastTransitionTime": now}]))
            run.cancel.wait()
            with self._lock:
                self._runs.pop(uid, None)
                current = self._objects.get(("pods", ns, name))
                if current is not None and current["metadata"]["uid"] == uid:
                    self._put("pods", ns, copy.deepcopy(current), "DELETED")
            return

        def scheduled(p: JSON) -> None:
            p["spec"]["nodeName"] = "fake-node"
            p["status"].update(
                hostIP="127.0.0.1", podIP=ip, podIPs=[{"ip": ip}], startTime=now,
                conditions=[{"type": "PodScheduled", "status": "True",
                             "lastTransitionTime": now}],
                containerStatuses=[{
                    "name": cname, "image": container.get("image", ""), "imageID": "",
                    "ready": False, "restartCount": 0, "started": False,
                    "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}])

        self._update("pods", ns, name, uid, scheduled)
        with self._lock:
            self._logs[(ns, name)] = bytearray()
        tmp = Path(tempfile.mkdtemp(prefix=f"fake-kubelet-{name}-"))
        try:
            self._bare_pod_loop(run, container, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            with self._lock:
                self._runs.pop(uid, None)
                current = self._objects.get(("pods", ns, name))
                if current is not None and current["metadata"]["uid"] == uid and (
                        current["metadata"].get("deletionTimestamp")
                        or self._stopping.is_set()):
                    # The log stays readable through pod_log() (not the API) for tests.
                    self._put("pods", ns, copy.deepcopy(current), "DELETED")

    def _bare_pod_loop(self, run: JobRun, container: JSON, tmp: Path) -> None:
        ns, name, uid = run.namespace, run.name, run.uid
        restarts = 0
        while not (run.cancel.is_set() or self._stopping.is_set()):
            pod = self.get_object("pods", ns, name)
            if pod is None:
                return
            try:
                argv, env, cwd = self._prepare(pod, container, tmp)
            except PodSetupError as e:
                self._kubelet_error(name, str(e))
                waiting = {"reason": e.reason, "message": str(e)}
                self._update("pods", ns, name, uid,
                             functools.partial(set_waiting, waiting=waiting))
                run.cancel.wait(0.2)
                continue
            code = self._serve_container(run, pod, container, argv, env, cwd, restarts)
            if code is None:
                return
            policy = pod["spec"].get("restartPolicy", "Always")
            again = (policy == "Always" or (policy == "OnFailure" and code != 0)) \
                and restarts < _MAX_RESTARTS
            if not again:
                self._update("pods", ns, name, uid, functools.partial(
                    set_fields_of, path="status",
                    phase="Succeeded" if code == 0 else "Failed"))
                return
            restarts += 1
            run.cancel.wait(self.retry_backoff)

    def _serve_container(self, run: JobRun, pod: JSON, container: JSON, argv: list[str],
                         env: dict[str, str], cwd: str | None, restarts: int) -> int | None:
        """Run the container once; its exit code, or None when the pod is being deleted."""
        ns, name, uid = run.namespace, run.name, run.uid
        ip = pod["status"].get("podIP", "127.0.0.1")
        try:
            proc = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as e:
            with self._lock:
                self._logs[(ns, name)] += f"exec: {e}\n".encode()
            return 128
        started = utc_timestamp()
        probe_port = _probe_port(container)

        def running(p: JSON) -> None:
            cs = p["status"]["containerStatuses"][0]
            if "terminated" in (cs.get("state") or {}):  # a restart: the last run's end
                cs["lastState"] = {"terminated": cs["state"]["terminated"]}
            cs.update(started=True, ready=probe_port is None, restartCount=restarts,
                      containerID=f"fake://{proc.pid}", state={"running": {"startedAt": started}})
            p["status"]["phase"] = "Running"
            _set_ready(p, probe_port is None)

        reader = threading.Thread(target=self._pump_log, args=(proc, ns, name),
                                  name=f"log-{name}", daemon=True)
        reader.start()
        with self._lock:
            run.proc = proc
            run.pod_name = name
        deleted = False
        try:
            self._update("pods", ns, name, uid, running)
            ready = probe_port is None
            while proc.poll() is None:
                if run.cancel.is_set() or self._stopping.is_set():
                    deleted = True
                    self._kill(proc, self._grace_seconds(pod))
                    break
                if not ready and probe_port is not None and _connects(ip, probe_port):
                    ready = True
                    self._update("pods", ns, name, uid, functools.partial(
                        _mark_ready, ready=True))
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.05)
            code = proc.wait()
        finally:
            self._release(run, proc, reader)
        exit_code = 128 - code if code < 0 else code
        finished = utc_timestamp()

        def terminated(p: JSON) -> None:
            cs = p["status"]["containerStatuses"][0]
            term = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                    "startedAt": started, "finishedAt": finished,
                    "containerID": cs.get("containerID", "")}
            cs.update(ready=False, started=False, state={"terminated": term})
            _set_ready(p, False)

        self._update("pods", ns, name, uid, terminated)
        return None if deleted else exit_code

    def wait_for_job(self, namespace: str, name: str, timeout: float = 10.0) -> JSON:
        """Wait (bounded) until a Job has a Complete or Failed condition; return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                job = self._objects.get(("jobs", namespace, name))
                if job is None:
                    raise not_found_error(KINDS["jobs"], name)
                conds = job.get("status", {}).get("conditions") or []
                if any(c["type"] in ("Complete", "Failed") for c in conds):
                    return copy.deepcopy(job)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"job {namespace}/{name} did not finish in {timeout}s")
                self._cond.wait(min(remaining, 0.2))

    def evict(self, namespace: str, job_name: str, timeout: float = 5.0) -> str:
        """Evict the Job's running pod: kill it and mark it with ``DisruptionTarget``.

        Waits (bounded) for the pod to be running; returns the pod name.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                job = self._objects.get(("jobs", namespace, job_name))
                run = self._runs.get(job["metadata"]["uid"]) if job else None
                if run is not None and run.proc is not None and run.pod_name is not None:
                    run.evict_pod = run.pod_name
                    return run.pod_name
            time.sleep(0.02)
        raise TimeoutError(f"job {namespace}/{job_name} has no running pod to evict")

    def _job_status(self, run: JobRun, mutate: Callable[[JSON], None]) -> bool:
        if run.orphaned:
            return False
        return self._update("jobs", run.namespace, run.name, run.uid,
                            lambda job: mutate(job.setdefault("status", {})))

    def _deadline(self, run: JobRun) -> float | None:
        job = self.get_object("jobs", run.namespace, run.name)
        ads = (job or {}).get("spec", {}).get("activeDeadlineSeconds")
        start = run.started
        return None if ads is None or start is None else start + float(ads)

    def _run_job(self, run: JobRun) -> None:
        started = time.monotonic()
        run.started = started
        hard_deadline = started + self.max_job_seconds
        job = self.get_object("jobs", run.namespace, run.name)
        if job is None:
            return
        spec = job["spec"]
        backoff_limit = int(spec.get("backoffLimit", 6))
        failed = 0
        self._job_status(run, lambda s: s.update(startTime=utc_timestamp(), ready=0,
                                                 uncountedTerminatedPods={}, terminating=0))
        for _attempt in range(_MAX_ATTEMPTS):
            if run.cancel.is_set() or self._stopping.is_set():
                return
            deadline = self._deadline(run)
            if deadline is not None and time.monotonic() >= deadline:
                self._fail_job(run, failed, "DeadlineExceeded",
                               DEADLINE_MESSAGE)
                return
            outcome = self._run_pod(run, job, min(hard_deadline, deadline or hard_deadline))
            if outcome is None or run.orphaned:
                return
            exit_code, pod, reason = outcome
            if reason == "DeadlineExceeded":
                self._fail_job(run, failed + 1, "DeadlineExceeded",
                               DEADLINE_MESSAGE)
                return
            if exit_code == 0:
                self._complete_job(run, failed)
                return
            action, rule_msg = self._match_failure_policy(spec, pod, exit_code)
            if action == "FailJob":
                self._fail_job(run, failed + 1, "PodFailurePolicy", rule_msg)
                return
            if action != "Ignore":
                failed += 1
            self._job_status(run, functools.partial(set_fields, failed=failed, active=0,
                                                    ready=0))
            if failed > backoff_limit:
                self._fail_job(run, failed, "BackoffLimitExceeded",
                               "Job has reached the specified backoff limit")
                return
            wait_until = time.monotonic() + self.retry_backoff
            while time.monotonic() < wait_until and not run.cancel.is_set():
                time.sleep(min(0.02, max(0.0, wait_until - time.monotonic())))
        self._fail_job(run, failed, "BackoffLimitExceeded", "Job has reached the specified "
                       "backoff limit")

    def _finish_conditions(self, status: JSON, types: Sequence[str], reason: str,
                           message: str) -> None:
        now = utc_timestamp()
        conds = status.setdefault("conditions", [])
        for t in types:
            conds.append({"type": t, "status": "True", "reason": reason, "message": message,
                          "lastProbeTime": now, "lastTransitionTime": now})

    def _complete_job(self, run: JobRun, failed: int) -> None:
        reason, message = "CompletionsReached", "Reached expected number of succeeded pods"

        def first(s: JSON) -> None:
            s.pop("active", None)
            s.update(ready=0, succeeded=1, terminating=0)
            if failed:
                s["failed"] = failed
            self._finish_conditions(s, ["SuccessCriteriaMet"], reason, message)

        def second(s: JSON) -> None:
            s["completionTime"] = utc_timestamp()
            self._finish_conditions(s, ["Complete"], reason, message)

        self._job_status(run, first)
        self._job_status(run, second)

    def _fail_job(self, run: JobRun, failed: int, reason: str, message: str) -> None:
        def first(s: JSON) -> None:
            if not any(c["type"] == "FailureTarget" for c in s.get("conditions") or []):
                self._finish_conditions(s, ["FailureTarget"], reason, message)

        def second(s: JSON) -> None:
            s.pop("active", None)
            s.update(ready=0, terminating=0)
            if failed:
                s["failed"] = failed
            self._finish_conditions(s, ["Failed"], reason, message)

        self._job_status(run, first)
        self._job_status(run, second)

    def _match_failure_policy(self, spec: JSON, pod: JSON, exit_code: int) -> tuple[str, str]:
        ns, pod_name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        conditions = {c["type"]: c.get("status") for c in pod["status"].get("conditions") or []}
        rules = (spec.get("podFailurePolicy") or {}).get("rules") or []
        container = pod["spec"]["containers"][0]["name"]
        for index, rule in enumerate(rules):
            action = rule["action"]
            codes = rule.get("onExitCodes")
            if codes:
                if codes.get("containerName") not in (None, container):
                    continue
                hit = exit_code in codes["values"]
                if codes["operator"] == "NotIn":
                    hit = not hit and exit_code != 0
                if hit:
                    return action, (
                        f"Container {container} for pod {ns}/{pod_name} failed with exit code "
                        f"{exit_code} matching {action} rule at index {index}"
                    )
                continue
            for pattern in rule.get("onPodConditions") or []:
                if conditions.get(pattern.get("type")) == pattern.get("status", "True"):
                    return action, (
                        f"Pod {ns}/{pod_name} has condition {pattern['type']} matching "
                        f"{action} rule at index {index}"
                    )
        return "Count", ""

    def _kubelet_error(self, pod_name: str, message: str) -> None:
        with self._lock:
            entry = f"pod {pod_name}: {message}"
            if len(self.kubelet_errors) < 1000 and entry not in self.kubelet_errors[-1:]:
                self.kubelet_errors.append(entry)

    def _run_pod(self, run: JobRun, job: JSON, deadline: float
                 ) -> tuple[int, JSON, str] | None:
        """Run one attempt; return (exit code, final pod, reason) or None when cancelled."""
        ns = run.namespace
        template = job["spec"]["template"]
        pod_name = f"{run.name}-{random_suffix()}"
        container = template["spec"]["containers"][0]
        cname = container["name"]
        pod: JSON = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "generateName": f"{run.name}-",
                "namespace": ns,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": utc_timestamp(),
                "labels": dict(template.get("metadata", {}).get("labels") or {}),
                "annotations": dict(template.get("metadata", {}).get("annotations") or {}),
                "finalizers": ["batch.kubernetes.io/job-tracking"],
                "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "Job", "name": run.name, "uid": run.uid,
                    "controller": True, "blockOwnerDeletion": True,
                }],
            },
            "spec": {**copy.deepcopy(template["spec"]), "nodeName": "fake-node",
                     "serviceAccountName": template["spec"].get("serviceAccountName", "default")},
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True",
                                "lastTransitionTime": utc_timestamp()}],
                "containerStatuses": [{
                    "name": cname, "image": container.get("image", ""), "imageID": "",
                    "ready": False, "restartCount": 0, "started": False,
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                    "lastState": {},
                }],
                "qosClass": "BestEffort",
            },
        }
        if not pod["metadata"]["annotations"]:
            del pod["metadata"]["annotations"]
        pod["metadata"]["labels"].update({
            "batch.kubernetes.io/controller-uid": run.uid,
            "batch.kubernetes.io/job-name": run.name,
            "controller-uid": run.uid,
            "job-name": run.name,
        })
        with self._lock:
            if run.cancel.is_set():
                return None
            self._put("pods", ns, pod, "ADDED")
            self._logs[(ns, pod_name)] = bytearray()
        pod_uid = pod["metadata"]["uid"]
        self._job_status(run, lambda s: s.update(active=1))
        tmp = Path(tempfile.mkdtemp(prefix=f"fake-kubelet-{pod_name}-"))
        try:
            spawn: tuple[list[str], dict[str, str], str | None] | None = None
            while spawn is None:
                try:
                    spawn = self._prepare(pod, container, tmp)
                except PodSetupError as e:
                    self._kubelet_error(pod_name, str(e))
                    waiting = {"reason": e.reason, "message": str(e)}
                    self._update("pods", ns, pod_name, pod_uid,
                                 functools.partial(set_waiting, waiting=waiting))
                    stop_at = time.monotonic() + 0.2
                    while time.monotonic() < stop_at:
                        if run.cancel.is_set() or self._stopping.is_set():
                            return None
                        if time.monotonic() >= deadline:
                            self._terminate_pod(run, pod_name, pod_uid, 1, "DeadlineExceeded")
                            return 1, self._pod_or(pod, ns, pod_name), "DeadlineExceeded"
                        time.sleep(0.02)
            argv, env, cwd = spawn
            return self._execute(run, pod, argv, env, cwd, deadline)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _pod_or(self, pod: JSON, ns: str, name: str) -> JSON:
        return self.get_object("pods", ns, name) or pod

    def _terminate_pod(self, run: JobRun, pod_name: str, pod_uid: str, code: int,
                       reason: str, extra_condition: JSON | None = None) -> None:
        now = utc_timestamp()

        def mutate(p: JSON) -> None:
            st = p["status"]
            st["phase"] = "Succeeded" if code == 0 else "Failed"
            if reason == "DeadlineExceeded":
                st["reason"] = "DeadlineExceeded"
                st["message"] = "Pod was active on the node longer than the specified deadline"
            cs = st["containerStatuses"][0]
            started = (cs["state"].get("running") or {}).get("startedAt", now)
            cs["state"] = {"terminated": {
                "exitCode": code, "reason": "Completed" if code == 0 else (
                    "StartError" if reason == "StartError" else "Error"),
                "startedAt": started, "finishedAt": now, "containerID": cs.get("containerID", ""),
            }}
            cs.update(ready=False, started=False)
            conds = [c for c in st.get("conditions", []) if c["type"] == "PodScheduled"]
            conds += [{"type": t, "status": "False", "reason": "PodCompleted" if code == 0
                       else "PodFailed", "lastTransitionTime": now}
                      for t in ("Initialized", "Ready", "ContainersReady")]
            if extra_condition is not None:
                conds.append(extra_condition)
            st["conditions"] = conds
            p["metadata"]["finalizers"] = []

        self._update("pods", run.namespace, pod_name, pod_uid, mutate)

    def _execute(self, run: JobRun, pod: JSON, argv: list[str], env: dict[str, str],
                 cwd: str | None, deadline: float) -> tuple[int, JSON, str] | None:
        ns, pod_name, pod_uid = run.namespace, pod["metadata"]["name"], pod["metadata"]["uid"]
        try:
            proc = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        except OSError as e:
            with self._lock:
                self._logs[(ns, pod_name)] += f"exec: {e}\n".encode()
            self._terminate_pod(run, pod_name, pod_uid, 128, "StartError")
            return 128, self._pod_or(pod, ns, pod_name), "StartError"
        now = utc_timestamp()

        def running(p: JSON) -> None:
            st = p["status"]
            st.update(phase="Running", startTime=now, hostIP="127.0.0.1", podIP="127.0.0.1")
            cs = st["containerStatuses"][0]
            cs.update(ready=True, started=True, containerID=f"fake://{proc.pid}",
                      state={"running": {"startedAt": now}})
            st["conditions"] = [c for c in st["conditions"] if c["type"] == "PodScheduled"] + [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("Initialized", "Ready", "ContainersReady")]

        reader = threading.Thread(target=self._pump_log, args=(proc, ns, pod_name),
                                  name=f"log-{pod_name}", daemon=True)
        reader.start()
        with self._lock:
            run.proc = proc
            run.pod_name = pod_name
        try:
            self._update("pods", ns, pod_name, pod_uid, running)
            self._job_status(run, lambda s: s.update(active=1, ready=1))
            reason = ""
            condition: JSON | None = None
            while proc.poll() is None:
                if run.cancel.is_set() or self._stopping.is_set():
                    reason = "Deleted"
                elif run.evict_pod == pod_name:
                    reason = "Evicted"
                    condition = {"type": "DisruptionTarget", "status": "True",
                                 "reason": "EvictionByEvictionAPI",
                                 "message": "Eviction API: evicting",
                                 "lastTransitionTime": utc_timestamp()}
                    self._update("pods", ns, pod_name, pod_uid,
                                 functools.partial(add_condition, condition=condition))
                elif time.monotonic() >= deadline:
                    reason = "DeadlineExceeded"
                    # Like the Job controller since 1.31: the outcome (FailureTarget) first,
                    # Failed only once the pod has terminated, after its grace period.
                    self._job_status(run, functools.partial(
                        self._finish_conditions, types=["FailureTarget"], reason=reason,
                        message=DEADLINE_MESSAGE))
                if reason:
                    self._kill(proc, self._grace_seconds(pod))
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.02)
            code = proc.wait()
        finally:
            self._release(run, proc, reader)
        exit_code = 128 - code if code < 0 else code
        if reason == "Deleted":
            if run.orphaned:
                self._terminate_pod(run, pod_name, pod_uid, exit_code, "Error")
            return None
        self._terminate_pod(run, pod_name, pod_uid, exit_code, reason, condition)
        return exit_code, self._pod_or(pod, ns, pod_name), reason

    def _release(self, run: JobRun, proc: subprocess.Popen[bytes],
                 reader: threading.Thread) -> None:
        """The container's process has ended: forget it, finish reading its log."""
        with self._lock:
            run.proc = None
            run.pod_name = None
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def _grace_seconds(self, pod: JSON) -> float:
        """The pod's terminationGracePeriodSeconds, at most ``termination_grace_seconds``."""
        grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        return min(float(grace), self.termination_grace_seconds)

    def _kill(self, proc: subprocess.Popen[bytes], grace: float) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def _pump_log(self, proc: subprocess.Popen[bytes], ns: str, pod_name: str) -> None:
        stream = proc.stdout
        if stream is None:
            return
        while True:
            try:
                chunk = os.read(stream.fileno(), 65536)
            except (OSError, ValueError):
                return
            if not chunk:
                return
            with self._cond:
                buf = self._logs.get((ns, pod_name))
                if buf is not None:
                    buf += chunk
                    if len(buf) > LOG_LIMIT_BYTES:
                        del buf[: len(buf) - LOG_LIMIT_BYTES]
                self._cond.notify_all()

    def _lookup(self, resource: str, ns: str, name: str, key: str | None, optional: bool
                ) -> dict[str, str] | None:
        obj = self.get_object(resource, ns, name)
        kind = "configmap" if resource == "configmaps" else "secret"
        if obj is None:
            if optional:
                return None
            raise PodSetupError("CreateContainerConfigError", f'{kind} "{name}" not found')
        data: dict[str, str] = dict(obj.get("data") or {})
        if resource == "secrets":
            data = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
        if key is not None and key not in data:
            if optional:
                return None
            raise PodSetupError("CreateContainerConfigError",
                                 f"couldn't find key {key} in {kind.capitalize()} {ns}/{name}")
        return data

    def _prepare(self, pod: JSON, container: JSON, tmp: Path
                 ) -> tuple[list[str], dict[str, str], str | None]:
        ns = pod["metadata"]["namespace"]
        volumes: dict[str, Path] = {}
        for vol in pod["spec"].get("volumes") or []:
            vname = vol["name"]
            if "configMap" in vol or "secret" in vol:
                is_cm = "configMap" in vol
                src = vol["configMap"] if is_cm else vol["secret"]
                ref = src.get("name") if is_cm else src.get("secretName")
                resource = "configmaps" if is_cm else "secrets"
                obj = self.get_object(resource, ns, str(ref))
                if obj is None and not src.get("optional"):
                    kind = "configmap" if is_cm else "secret"
                    raise PodSetupError("ContainerCreating", f'MountVolume.SetUp failed for '
                                         f'volume "{vname}" : {kind} "{ref}" not found')
                target = tmp / "volumes" / vname
                target.mkdir(parents=True, exist_ok=True)
                files: dict[str, bytes] = {}
                if obj is not None:
                    for k, v in (obj.get("data") or {}).items():
                        files[k] = base64.b64decode(v) if not is_cm else str(v).encode()
                    for k, v in (obj.get("binaryData") or {}).items():
                        files[k] = base64.b64decode(v)
                items = src.get("items")
                if items:
                    files = {i["path"]: files[i["key"]] for i in items if i["key"] in files}
                for rel, content in files.items():
                    path = target / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(content)
                volumes[vname] = target
            elif "emptyDir" in vol:
                target = tmp / "volumes" / vname
                target.mkdir(parents=True, exist_ok=True)
                volumes[vname] = target
            elif "persistentVolumeClaim" in vol:
                claim = vol["persistentVolumeClaim"]["claimName"]
                if claim not in self.pvc_dirs:
                    raise PodSetupError(
                        "ContainerCreating",
                        f'persistentvolumeclaim "{claim}" not found (no pvc_dirs mapping)')
                self.pvc_dirs[claim].mkdir(parents=True, exist_ok=True)
                volumes[vname] = self.pvc_dirs[claim]
            else:
                raise PodSetupError("ContainerCreating",
                                     f"volume {vname}: unsupported volume type in the fake")
        mounts: list[tuple[str, str]] = []
        for vm in container.get("volumeMounts") or []:
            local = volumes[vm["name"]]
            mounts.append((vm["mountPath"].rstrip("/") or "/", str(local)))
        mounts.sort(key=lambda m: len(m[0]), reverse=True)

        def rewrite(value: str) -> str:
            for mount_path, local in mounts:
                if value == mount_path or value.startswith(mount_path + "/"):
                    return local + value[len(mount_path):]
            return value

        # Container-declared env (envFrom, then env) is expanded and path-rewritten; the base
        # env (default: this process's environment) is only the layer underneath.
        cenv: dict[str, str] = {}
        for src in container.get("envFrom") or []:
            prefix = src.get("prefix", "")
            for key, resource in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
                if key in src:
                    data = self._lookup(resource, ns, src[key]["name"], None,
                                        bool(src[key].get("optional")))
                    for k, v in (data or {}).items():
                        cenv[prefix + k] = v
        for item in container.get("env") or []:
            value = self._env_value(pod, item)
            if value is not None:
                cenv[item["name"]] = _VAR_REF.sub(lambda m: cenv.get(m.group(1), m.group(0)),
                                                  value)
        env: dict[str, str] = dict(self.base_env if self.base_env is not None else os.environ)
        env[NODE_CPUS_ENV] = str(self.node_cpus)  # read by tests.fakes.kube.node
        env["HOSTNAME"] = str(pod["metadata"]["name"])  # as the kubelet sets it
        env.update({k: rewrite(v) for k, v in cenv.items()})
        for mount_path, local_dir in mounts:
            if mount_path == "/tmp":
                env["TMPDIR"] = local_dir
        command = list(container.get("command") or [])
        args = list(container.get("args") or [])
        if not command:
            raise PodSetupError("CreateContainerError",
                                 "container has no command (images are not run by the fake)")
        expanded = [_VAR_REF.sub(lambda m: cenv.get(m.group(1), m.group(0)), a)
                    for a in command + args]
        if expanded[:2] == ["tini", "--"]:
            # The image's init: it only passes signals on and reaps zombies, so the fake
            # (which has no image) runs the command behind it directly.
            expanded = expanded[2:]
        head = self.command_map.get(expanded[0], [expanded[0]])
        argv = list(head) + [self._resolve(rewrite(a), pod) for a in expanded[1:]]
        for k in cenv:
            env[k] = self._resolve(env[k], pod)
        cwd: str | None = None
        if container.get("workingDir"):
            mapped = rewrite(container["workingDir"])
            if mapped != container["workingDir"]:
                cwd = mapped
        return argv, env, cwd

    def _insufficient(self, pod: JSON) -> list[str]:
        """The resources the pod requests beyond the node's allocatable (``cpu``,
        ``memory``): such a pod is never scheduled."""
        short = []
        for resource, node in (("cpu", self.node_cpus), ("memory", self.node_memory)):
            total = 0.0
            for c in pod["spec"].get("containers") or []:
                res = c.get("resources") or {}
                value = (res.get("requests") or {}).get(resource, (res.get("limits") or {})
                                                        .get(resource))
                if value is not None:
                    total += quantity(value)
            if total > node:
                short.append(resource)
        return short

    def _resource_field(self, pod: JSON, ref: JSON) -> int:
        """A ``resourceFieldRef`` as the kubelet answers it: the container's limit (or
        request), and the node's allocatable CPUs or memory for a limit that is not set;
        divided by ``divisor`` and rounded up."""
        containers = pod["spec"].get("containers") or []
        name = ref.get("containerName")
        container = next((c for c in containers if c.get("name") == name),
                         containers[0] if containers and not name else None)
        if container is None:
            raise PodSetupError("CreateContainerConfigError",
                                 f"resourceFieldRef: container {name!r} not found")
        what = str(ref.get("resource", ""))
        kind, _, resource = what.partition(".")
        if kind not in ("limits", "requests") or resource not in ("cpu", "memory"):
            raise PodSetupError("CreateContainerConfigError",
                                 f"unsupported resourceFieldRef resource {what!r}")
        resources = container.get("resources") or {}
        given = (resources.get(kind) or {}).get(resource)
        if given is None and kind == "requests":
            given = (resources.get("limits") or {}).get(resource)
        node = float(self.node_cpus if resource == "cpu" else self.node_memory)
        amount = quantity(given) if given is not None else node
        divisor = quantity(ref.get("divisor") or "1")
        return max(1, int(-(-amount // divisor)))

    def _resolve(self, value: str, pod: JSON) -> str:
        """The cluster DNS, for the names a process is started with: each
        ``<service>.<namespace>.svc[.cluster.local]`` of a headless Service becomes the IP of
        a Ready pod its selector matches, which is what the cluster DNS answers for a
        headless Service. Names of other Services, or with no Ready pod, stay as they are
        (they do not resolve on this machine, as a name without records would not)."""
        def answer(m: re.Match[str]) -> str:
            svc = self.get_object("services", m.group(3), m.group(1))
            if svc is None:
                return m.group(0)
            spec = svc.get("spec") or {}
            if spec.get("clusterIP") != "None":
                self._kubelet_error(pod["metadata"]["name"], f"service {m.group(1)} has a "
                                    "cluster IP: only headless Services resolve in the fake")
                return m.group(0)
            selector = ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items())
            for other in self._list("pods", m.group(3), Selector("pods", selector, None)):
                if _is_ready(other) and other["status"].get("podIP"):
                    return str(other["status"]["podIP"])
            return m.group(0)

        return _SERVICE_DNS.sub(answer, value)

    def _env_value(self, pod: JSON, item: JSON) -> str | None:
        if "valueFrom" not in item:
            return str(item.get("value", ""))
        src = item["valueFrom"]
        ns = pod["metadata"]["namespace"]
        if "fieldRef" in src:
            path = src["fieldRef"]["fieldPath"]
            meta = pod["metadata"]
            simple = {
                "metadata.name": meta["name"],
                "metadata.namespace": ns,
                "metadata.uid": meta["uid"],
                "spec.nodeName": pod["spec"].get("nodeName", ""),
                "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
                "status.podIP": str((pod.get("status") or {}).get("podIP") or "127.0.0.1"),
                "status.hostIP": "127.0.0.1",
            }
            if path in simple:
                return str(simple[path])
            m = _FIELD_REF.match(path)
            if m:
                return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
            raise PodSetupError("CreateContainerConfigError",
                                 f"unsupported fieldRef fieldPath {path!r}")
        if "resourceFieldRef" in src:
            return str(self._resource_field(pod, src["resourceFieldRef"]))
        for key, resource in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
            if key in src:
                ref = src[key]
                data = self._lookup(resource, ns, ref["name"], ref["key"],
                                    bool(ref.get("optional")))
                return None if data is None else data[ref["key"]]
        raise PodSetupError("CreateContainerConfigError", "unsupported valueFrom in the fake")


_QUANTITY = re.compile(r"^([0-9.]+)(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$")
_SUFFIX = {"": 1, "m": 0.001, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
           "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
           "Ei": 2**60}


def quantity(value: Any) -> float:
    """A Kubernetes quantity (``2Gi``, ``500m``, ``1e3`` not supported) as a number."""
    m = _QUANTITY.match(str(value).strip())
    if not m:
        raise PodSetupError("CreateContainerConfigError", f"unsupported quantity {value!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2) or ""]


def _probe_port(container: JSON) -> int | None:
    """The port of the container's tcpSocket readiness probe (a named port resolved)."""
    port = ((container.get("readinessProbe") or {}).get("tcpSocket") or {}).get("port")
    if isinstance(port, str):
        named = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        port = named.get(port)
    return int(port) if isinstance(port, int) else None


def _connects(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False


def _is_ready(pod: JSON) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or []) \
        and not pod["metadata"].get("deletionTimestamp")


def _set_ready(pod: JSON, ready: bool) -> None:
    now = utc_timestamp()
    conds = [c for c in pod["status"].get("conditions") or [] if c["type"] == "PodScheduled"]
    conds.append({"type": "Initialized", "status": "True", "lastTransitionTime": now})
    conds += [{"type": t, "status": "True" if ready else "False", "lastTransitionTime": now}
              for t in ("Ready", "ContainersReady")]
    pod["status"]["conditions"] = conds


def _mark_ready(pod: JSON, ready: bool) -> None:
    pod["status"]["containerStatuses"][0]["ready"] = ready
    _set_ready(pod, ready)


def set_fields_of(obj: JSON, path: str, **fields: Any) -> None:
    """Set fields of ``obj[path]`` (a status mutation)."""
    obj.setdefault(path, {}).update(fields)


def set_fields(obj: JSON, **fields: Any) -> None:
    """Set top-level fields of ``obj`` (a status mutation)."""
    obj.update(fields)


def set_waiting(pod: JSON, waiting: JSON) -> None:
    """Mark the pod's container as waiting (a pod mutation)."""
    pod["status"]["containerStatuses"][0]["state"] = {"waiting": waiting}


def add_condition(pod: JSON, condition: JSON) -> None:
    """Append a condition to the pod's status (a pod mutation)."""
    pod["status"].setdefault("conditions", []).append(condition)


class PodSetupError(Exception):
    """A pod cannot start: the container's waiting reason and message."""
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason



