#!/usr/bin/env bash
# End-to-end run on a throw-away kind cluster:
#   create the cluster (k8s/kind-config.yaml) -> build the image and load it into kind ->
#   for each mode of MODES:
#     local:     helm install with values-dev.yaml (PVC store file:///data) -> helm test
#                (storage-check) -> start a run from the CronJob -> wait for the controller
#                Job (bounded) -> print its log (the run summary);
#     ephemeral: the same with data.engine dask and dask.cluster ephemeral (the run's own
#                scheduler and worker pods), in namespace <NAMESPACE>-ephemeral, on a
#                ReadWriteMany claim (k8s/kind-rwx-store.yaml: a hostPath volume on kind's
#                one node; the chart refuses an ephemeral cluster on a ReadWriteOnce claim)
#   -> delete the cluster (always, via trap).
#
# The image is loaded with `docker save` + `kind load image-archive`: `kind load
# docker-image` fails with Docker 29's containerd image store (kind#3795).
#
# `helm install` runs without --wait: the chart's only workload is a CronJob, so no pod
# uses the claim at install time, and kind's default StorageClass binds a claim only for
# its first pod (WaitForFirstConsumer): --wait would time out (helm/helm#10733). The
# helm test pod is the claim's first consumer. tests/test_kind_e2e.py checks these
# commands against the rendered chart.
#
# Needs docker, kind, helm and kubectl; exits 2 naming the missing ones otherwise.
# Environment:
#   CLUSTER=mlops-e2e        kind cluster name
#   IMAGE=mlops:0.1.0        image built and loaded (pinned tag, never latest)
#   NAMESPACE=mlops RELEASE=mlops
#   RUN_TIMEOUT=900          seconds to wait for the controller Job
#   MODES="local ephemeral"  the dask.cluster modes to run, one release each
#   KEEP_CLUSTER=1           keep the cluster for debugging instead of deleting it
set -euo pipefail

cd "$(dirname "$0")/.."

CLUSTER="${CLUSTER:-mlops-e2e}"
IMAGE="${IMAGE:-mlops:0.1.0}"
NAMESPACE="${NAMESPACE:-mlops}"
RELEASE="${RELEASE:-mlops}"
RUN_TIMEOUT="${RUN_TIMEOUT:-900}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
MODES="${MODES:-local ephemeral}"
CHART=helm/mlops
VALUES=helm/mlops/values-dev.yaml

log() { printf '\n==> %s\n' "$*" >&2; }

missing=()
for tool in docker kind helm kubectl; do
  command -v "$tool" > /dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "kind-e2e: missing required tool(s): ${missing[*]}" >&2
  echo "kind-e2e: install docker, kind, helm and kubectl and retry (nothing was changed)." >&2
  exit 2
fi
if ! docker info > /dev/null 2>&1; then
  echo "kind-e2e: docker is installed but the daemon is not reachable (is it running?)" >&2
  exit 2
fi
for mode in $MODES; do
  case "$mode" in
    local | ephemeral) ;;
    *) echo "kind-e2e: MODES takes local and/or ephemeral, got '$mode'" >&2; exit 2 ;;
  esac
done
case "$IMAGE" in
  *:latest | *:) echo "kind-e2e: IMAGE must carry a pinned tag, not '$IMAGE'" >&2; exit 2 ;;
  *:*) ;;
  *) echo "kind-e2e: IMAGE must be name:tag, got '$IMAGE'" >&2; exit 2 ;;
esac

CONTEXT="kind-${CLUSTER}"
ARCHIVE="$(mktemp -d)/mlops-image.tar"

teardown() {
  local rc=$?
  rm -rf "$(dirname "$ARCHIVE")"
  if [[ "$KEEP_CLUSTER" == 1 ]]; then
    log "keeping cluster $CLUSTER (KEEP_CLUSTER=1); delete with: kind delete cluster --name $CLUSTER"
  else
    log "deleting kind cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" > /dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

log "creating kind cluster $CLUSTER"
kind create cluster --name "$CLUSTER" --config k8s/kind-config.yaml --wait 120s

log "building $IMAGE and loading it into kind (docker save + kind load image-archive)"
docker build -t "$IMAGE" .
docker save -o "$ARCHIVE" "$IMAGE"
kind load image-archive "$ARCHIVE" --name "$CLUSTER"

# manual_job_name CRONJOB: <cronjob cut to 45>-manual-<epoch>, at most 63 characters (a
# CronJob name has up to 52; the suffix takes 18).
manual_job_name() {
  local prefix="${1:0:45}"
  printf '%s-manual-%s\n' "${prefix%-}" "$(date +%s)"
}

# write_source NS: the Dask engine reads files, so a Job writes two Parquet parts of
# synthetic data into the RWX claim (/data/source/), after chowning the hostPath folder to
# the image's uid (fsGroup does not apply to hostPath volumes).
write_source() {
  local ns="$1"
  kubectl --context "$CONTEXT" -n "$ns" apply -f - <<YAML
apiVersion: batch/v1
kind: Job
metadata:
  name: mlops-e2e-source
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      volumes:
        - name: data
          persistentVolumeClaim:
            claimName: mlops-store-rwx
      initContainers:
        - name: chown
          image: $IMAGE
          imagePullPolicy: IfNotPresent
          command: ["chown", "10001:10001", "/data"]
          securityContext:
            runAsUser: 0
          volumeMounts:
            - name: data
              mountPath: /data
      containers:
        - name: source
          image: $IMAGE
          imagePullPolicy: IfNotPresent
          command: ["python", "-c"]
          args:
            - |
              import os
              from mlops.data import generate_synthetic_data
              os.makedirs("/data/source", exist_ok=True)
              for i in range(2):
                  generate_synthetic_data(2000, 8, i).to_parquet(f"/data/source/part-{i}.parquet", index=False)
          securityContext:
            runAsUser: 10001
            runAsGroup: 10001
          volumeMounts:
            - name: data
              mountPath: /data
YAML
  kubectl --context "$CONTEXT" -n "$ns" wait --for=condition=complete job/mlops-e2e-source \
    --timeout=300s
}

# run_mode MODE: install the chart in MODE's namespace, helm test, one run; 0 on success.
run_mode() {
  local mode="$1" ns="$NAMESPACE" extra=()
  if [[ "$mode" == ephemeral ]]; then
    ns="${NAMESPACE}-ephemeral"
    kubectl --context "$CONTEXT" create namespace "$ns" --dry-run=client -o yaml \
      | kubectl --context "$CONTEXT" apply -f -
    kubectl --context "$CONTEXT" apply -f k8s/kind-rwx-store.yaml
    write_source "$ns"
    extra=(--set dask.cluster=ephemeral --set config.data.engine=dask
           --set config.data.source=/data/source/
           --set persistence.existingClaim=mlops-store-rwx
           --set "persistence.accessModes={ReadWriteMany}"
           --set dask.worker.resources.requests.cpu=250m
           --set dask.worker.resources.requests.memory=1Gi
           --set dask.worker.resources.limits.memory=1Gi
           --set dask.worker.spill.size=1Gi)
  fi
  local kubectl=(kubectl --context "$CONTEXT" -n "$ns")

  log "[$mode] helm install $RELEASE ($VALUES) in $ns"
  helm install "$RELEASE" "$CHART" --kube-context "$CONTEXT" -n "$ns" --create-namespace \
    -f "$VALUES" --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
    "${extra[@]}" --timeout 5m

  log "[$mode] helm test: the store is reachable and writable (mlops storage-check)"
  # The test pod is kept after it passes (no hook-succeeded delete policy), so --logs can
  # read it (helm/helm#9098).
  helm test "$RELEASE" --kube-context "$CONTEXT" -n "$ns" --logs --timeout 5m

  local cronjob job
  cronjob="$("${kubectl[@]}" get cronjob -l "app.kubernetes.io/instance=$RELEASE" \
    -o jsonpath='{.items[0].metadata.name}')"
  job="$(manual_job_name "$cronjob")"
  log "[$mode] starting run $job from cronjob/$cronjob"
  "${kubectl[@]}" create job --from="cronjob/$cronjob" "$job"

  log "[$mode] waiting up to ${RUN_TIMEOUT}s for job/$job"
  local deadline=$((SECONDS + RUN_TIMEOUT)) status=""
  while ((SECONDS < deadline)); do
    status="$("${kubectl[@]}" get job "$job" \
      -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')"
    case " $status " in
      *" Complete "*) status=Complete; break ;;
      *" Failed "*) status=Failed; break ;;
    esac
    sleep 5
  done

  log "[$mode] jobs and pods of this run"
  "${kubectl[@]}" get jobs,pods -o wide || true

  log "[$mode] controller log (run summary; also in the store at runs/$job/summary.json)"
  "${kubectl[@]}" logs "job/$job" --all-containers --tail=-1 || true

  case "$status" in
    Complete) log "[$mode] run $job succeeded"; return 0 ;;
    Failed) log "[$mode] run $job FAILED"; "${kubectl[@]}" describe job "$job" || true ;;
    *) log "[$mode] run $job did not finish within ${RUN_TIMEOUT}s" ;;
  esac
  return 1
}

failed=()
for mode in $MODES; do
  run_mode "$mode" || failed+=("$mode")
done
if ((${#failed[@]})); then
  log "FAILED modes: ${failed[*]}"
  exit 1
fi
log "every mode succeeded: $MODES"
