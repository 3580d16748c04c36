"""A small, strict Kubernetes API server plus "kubelet" for tests.

There is no kube-apiserver, kind or Docker in CI, so the controller's tests talk HTTP to this
server with the real ``kubernetes`` Python client. It listens on ``127.0.0.1`` (free port),
authenticates a bearer token from a generated kubeconfig, and aims to be *no easier* than a
real API server: objects are schema-validated strictly, defaults and server-side fields are
filled in, errors are Kubernetes ``Status`` objects worded like the real server's, and Jobs
run their container as a local subprocess with real exit codes. No maintained package does
this (kind and envtest need binaries and run no pods), so it lives here.

Modules
=======

``model`` (kinds, ``Status`` errors, names), ``selectors`` (label and field selectors),
``validation`` (schema, the API's own rules, defaulting), ``store`` (objects,
resourceVersions, watch events, create/delete), ``kubelet`` (pods as subprocesses, Job
status), ``server`` (HTTP routing, authentication, RBAC, admission, faults, lists, logs,
watches) and ``api`` (:class:`FakeKubeAPI`, which puts them together).

Public API
==========

``FakeKubeAPI(namespaces=("default",), command_map=None, pvc_dirs=None, base_env=None,
user=DEFAULT_USER, retry_backoff=0.1, termination_grace_seconds=2.0, event_history=1000,
max_job_seconds=600.0, kube_version="1.30.0", enforce_owner_references=False,
node_cpus=16, node_memory=64 * 2**30)``

Lifecycle and connection:
    ``start()`` / ``stop()`` (kills every process, joins threads, bounded), context manager;
    ``url`` (``http://127.0.0.1:PORT``), ``port``, ``token``;
    ``write_kubeconfig(path, namespace="default") -> Path``.

Configuration (may be changed while running):
    ``command_map`` (``command[0]`` -> argv prefix), ``pvc_dirs`` (claim name -> local dir),
    ``base_env`` (env the containers start from; default ``os.environ`` at spawn time),
    ``add_namespace(name)``, ``forbid(verb, resource, namespace=None)``,
    ``allow(verb, resource, namespace=None)``, ``use_role(role)`` (authorize every request
    by an RBAC Role's rules, e.g. the chart's), ``enforce_owner_references`` (the
    OwnerReferencesPermissionEnforcement admission plugin),
    ``inject_faults(method, path_prefix, status, count=1, message=None, retry_after=None)``,
    ``clear_faults()``.

Inspection and driving:
    ``requests`` (list of :class:`RequestRecord` ``(method, path, query)``),
    ``clear_requests()``, ``jobs(namespace)``, ``events(namespace)``,
    ``pods(namespace, job_name=None)``, ``services(namespace)``,
    ``created(resource, namespace)`` (every object as created, deleted ones too),
    ``get_object(resource, namespace, name)`` (``None`` if absent),
    ``create_object(obj) -> dict`` (same validation/defaulting as HTTP; raises
    :class:`KubeAPIError`), ``delete_object(resource, namespace, name, propagation_policy)``,
    ``pod_log(namespace, pod_name)``, ``wait_for_job(namespace, name, timeout=10.0) -> dict``
    (waits for a Complete/Failed condition), ``evict(namespace, job_name) -> pod name``
    (the pod gets ``DisruptionTarget`` and is stopped with its grace period),
    ``kubelet_errors`` (problems the kubelet hit, e.g. an unmapped PVC).

Resources: ``batch/v1`` jobs (create, get, ``/status`` get, list, watch, delete with
``Orphan`` or ``Background`` propagation: the Background garbage collector also removes the
pods and Services the Job owns), ``v1`` pods (create, get, list, watch, delete, ``/log`` with
``tailLines``), ``v1`` services (create, get, list, watch, delete), ``v1`` configmaps and
secrets (create, get, list, watch, delete), ``v1`` namespaces (get, list),
``apps/v1`` replicasets and ``kubernetes.dask.org/v1`` daskclusters (create, get, list,
watch, delete), ``events.k8s.io/v1`` events (create, get, list, watch, delete;
``forbid("create", "events")`` or a Role without the events rule answers 403), ``/version``.

Behaviour of a real cluster it reproduces:

* Job terminal conditions as from Kubernetes 1.31: ``SuccessCriteriaMet`` before
  ``Complete``; ``FailureTarget`` before ``Failed``, and past ``activeDeadlineSeconds``
  ``FailureTarget`` is set while the pod is still terminating, ``Failed`` only after the pod
  has stopped (SIGTERM, its ``terminationGracePeriodSeconds``, then SIGKILL).
* ``podFailurePolicy`` (``FailJob``/``Ignore``/``Count`` on exit codes and pod conditions),
  ``backoffLimit``, ``activeDeadlineSeconds``; an evicted pod carries ``DisruptionTarget``.
* RBAC by a Role's rules (``use_role``) and OwnerReferencesPermissionEnforcement: setting
  ownerReferences needs ``delete`` on the object, ``blockOwnerDeletion`` needs ``update`` on
  ``<owner>/finalizers``; both answer 403 with the real plugin's wording.
* Watches with resourceVersions, bookmarks-free resumption and 410 Gone after compaction.
* Pods created through the API (not a Job's): each gets an IP of its own in 127.0.0.0/8
  (``status.podIP``, also through the downward API), so two pods listen on one port like on
  a cluster; the first container runs as a subprocess, restarted per ``restartPolicy``
  (``restartCount``, ``lastState``); Ready at once, or once its ``tcpSocket`` readiness
  probe connects; a delete is graceful (``deletionTimestamp``, SIGTERM, grace period,
  SIGKILL, then the pod is gone).
* The cluster DNS of headless Services (``clusterIP: None``): a container's env values and
  args naming ``<service>.<namespace>.svc[.cluster.local]`` are resolved, when the process
  starts, to the IP of a Ready pod the Service selects, as the DNS answers for a headless
  Service. A Service with a cluster IP is stored but not routed (no kube-proxy: the name is
  left as it is and ``kubelet_errors`` says so).

* A node with more CPUs than this machine: ``node_cpus`` (16) and ``node_memory`` (64 GiB)
  are the node's allocatable resources. A ``resourceFieldRef`` env value answers the
  container's limit or request (the node's allocatable for a limit not set), and every
  container gets ``$FAKE_NODE_CPUS``: a process started through ``tests.fakes.kube.node``
  (e.g. ``command_map={"dask": [python, "-m", "tests.fakes.kube.node", "dask"]}``) sees that
  many CPUs, as a worker on a 16-core node without a CPU limit does.

* Workload controllers (``workloads``): ``apps/v1`` ReplicaSets keep their replicas,
  replacing deleted, evicted or ended pods; ``evict_pod(namespace, name)`` is the Eviction
  API (``DisruptionTarget``, graceful delete); ``drain(namespace=None, force=False)`` is
  ``kubectl drain``, refusing pods without a controller owner (``DrainRefused``); the Dask
  operator's ``kubernetes.dask.org/v1`` DaskCluster gets its scheduler Service and
  workloads and ``status.phase: Running`` once its scheduler pod is Ready; a Job with
  ``ttlSecondsAfterFinished`` is deleted that long after its ``Complete``/``Failed``
  condition (the TTL-after-finished controller, with ``Background`` rather than
  ``Foreground`` propagation); the garbage collector removes objects whose owners were all
  deleted.

Deliberate differences from a real cluster:

* Workload controllers: ReplicaSets only (no Deployments, rollouts or pod-deletion cost);
  no PodDisruptionBudgets (every eviction is allowed); ``drain`` does not skip DaemonSet
  pods or refuse emptyDir data (as ``--ignore-daemonsets --delete-emptydir-data``). The
  DaskCluster's workloads are ReplicaSets (the operator makes Deployments) and its workers
  are created once the scheduler pod is Ready (the operator creates them at once; they
  retry until the scheduler's name resolves, which the fake's start-time DNS cannot).
  A pod requesting more CPU or memory than the node has stays Pending (``Unschedulable``,
  the scheduler's wording) for good: there is no Cluster Autoscaler.

* Any request naming a namespace that does not exist gets 404 ``namespaces "x" not found``
  (a real server answers list with an empty list and get with ``jobs.batch "y" not found``).
* Unknown fields are rejected with 422 Invalid (a real server's default ``fieldValidation``
  is ``Warn``: it drops them silently).
* No update/patch (PUT/PATCH answer 405), no deletion of a Job's pods through the API,
  no eviction API (``evict()`` stands in for a drain), no Foreground deletion, no
  pagination (``limit``/``continue`` are ignored), no ``follow``/``previous`` logs, no API
  discovery beyond ``/version``, no ``dryRun``.
* No scheduler and one node: ``nodeSelector``, tolerations and affinity are accepted and
  ignored, so a ReadWriteOnce claim shared by pods "on different nodes" (Multi-Attach) and
  unschedulable pods are not reproduced; PVC access modes and binding
  (``WaitForFirstConsumer``) are not modelled (``pvc_dirs`` maps a claim to a folder).
* No security admission: ``runAsUser``/``fsGroup`` are not checked against a range (as
  OpenShift's SCCs do) and the process runs as the test's user; no ``fsGroup`` chown.
* ``spec.suspend``, ``parallelism``/``completions`` > 1,
  Indexed completion mode, resource limits, probes (but a bare pod's ``tcpSocket``
  readiness probe), images and init containers are ignored: each Job runs one pod at a
  time, the first container of the template only. A bare pod's ``activeDeadlineSeconds``
  is ignored; the restart back-off is ``retry_backoff`` and restarts stop after 20.
* A pod's log stays readable through ``pod_log()`` after the pod was deleted (not through
  the API).
* Retry back-off is ``retry_backoff`` seconds instead of 10 s, 20 s, 40 s ...; a pod's
  grace period is capped at ``termination_grace_seconds``.
* A Job whose thread runs longer than ``max_job_seconds`` is failed with
  ``DeadlineExceeded`` (a safety bound; a real Job without a deadline runs forever).
* A pod whose volumes cannot be prepared (missing ConfigMap/Secret, unmapped PVC) stays
  Pending like on a real node and the problem is appended to ``kubelet_errors``.
"""

from tests.fakes.kube.api import FakeKubeAPI
from tests.fakes.kube.model import DEFAULT_USER, KubeAPIError, RequestRecord
from tests.fakes.kube.selectors import parse_label_selector

__all__ = ["DEFAULT_USER", "FakeKubeAPI", "KubeAPIError", "RequestRecord",
           "parse_label_selector"]
