#!/usr/bin/env bash
# End-to-end run on a throw-away kind cluster:
#   create the cluster (k8s/kind-config.yaml) -> build the image and load it into kind ->
#   helm install with values-dev.yaml (PVC store file:///data) -> helm test (storage-check)
#   -> start a run from the CronJob -> wait for the controller Job (bounded) -> print its
#   log (the run summary) -> delete the cluster (always, via trap).
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
#   KEEP_CLUSTER=1           keep the cluster for debugging instead of deleting it
set -euo pipefail

cd "$(dirname "$0")/.."

CLUSTER="${CLUSTER:-mlops-e2e}"
IMAGE="${IMAGE:-mlops:0.1.0}"
NAMESPACE="${NAMESPACE:-mlops}"
RELEASE="${RELEASE:-mlops}"
RUN_TIMEOUT="${RUN_TIMEOUT:-900}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
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
case "$IMAGE" in
  *:latest | *:) echo "kind-e2e: IMAGE must carry a pinned tag, not '$IMAGE'" >&2; exit 2 ;;
  *:*) ;;
  *) echo "kind-e2e: IMAGE must be name:tag, got '$IMAGE'" >&2; exit 2 ;;
esac

CONTEXT="kind-${CLUSTER}"
KUBECTL=(kubectl --context "$CONTEXT" -n "$NAMESPACE")

teardown() {
  local rc=$?
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

log "building $IMAGE and loading it into kind"
docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "helm install $RELEASE ($VALUES)"
helm install "$RELEASE" "$CHART" --kube-context "$CONTEXT" -n "$NAMESPACE" --create-namespace \
  -f "$VALUES" --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --timeout 5m

log "helm test: the store is reachable and writable (mlops storage-check)"
# The test pod is kept after it passes (no hook-succeeded delete policy), so --logs can
# read it (helm/helm#9098).
helm test "$RELEASE" --kube-context "$CONTEXT" -n "$NAMESPACE" --logs --timeout 5m

# manual_job_name CRONJOB: <cronjob cut to 45>-manual-<epoch>, at most 63 characters (a
# CronJob name has up to 52; the suffix takes 18).
manual_job_name() {
  local prefix="${1:0:45}"
  printf '%s-manual-%s\n' "${prefix%-}" "$(date +%s)"
}

CRONJOB="$("${KUBECTL[@]}" get cronjob -l "app.kubernetes.io/instance=$RELEASE" \
  -o jsonpath='{.items[0].metadata.name}')"
JOB="$(manual_job_name "$CRONJOB")"
log "starting run $JOB from cronjob/$CRONJOB"
"${KUBECTL[@]}" create job --from="cronjob/$CRONJOB" "$JOB"

log "waiting up to ${RUN_TIMEOUT}s for job/$JOB"
deadline=$((SECONDS + RUN_TIMEOUT))
status=""
while ((SECONDS < deadline)); do
  status="$("${KUBECTL[@]}" get job "$JOB" \
    -o jsonpath='{range .status.conditions[?(@.status=="True")]}{.type}{" "}{end}')"
  case " $status " in
    *" Complete "*) status=Complete; break ;;
    *" Failed "*) status=Failed; break ;;
  esac
  sleep 5
done

log "jobs of this run"
"${KUBECTL[@]}" get jobs -o wide || true

log "controller log (run summary; also in the store at runs/$JOB/summary.json)"
"${KUBECTL[@]}" logs "job/$JOB" --all-containers --tail=-1 || true

case "$status" in
  Complete) log "run $JOB succeeded"; exit 0 ;;
  Failed) log "run $JOB FAILED"; "${KUBECTL[@]}" describe job "$JOB" || true; exit 1 ;;
  *) log "run $JOB did not finish within ${RUN_TIMEOUT}s"; exit 1 ;;
esac
