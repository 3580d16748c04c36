# Deployment targets (container image, kind, Helm, plain manifests).
# Included by the main Makefile: `include mk/deploy.mk`.
# Each target checks the tools it needs and stops with a message if one is missing.

IMAGE_NAME   ?= mlops
IMAGE_TAG    ?= 0.1.0
IMAGE        ?= $(IMAGE_NAME):$(IMAGE_TAG)
KIND_CLUSTER ?= mlops
KIND_CONFIG  ?= k8s/kind-config.yaml
K8S_NS       ?= mlops
HELM_RELEASE ?= mlops
CHART_DIR    ?= helm/mlops
DEV_VALUES   ?= $(CHART_DIR)/values-dev.yaml
DEPLOY_PY    ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,python3)

# $(call require,tool...): stop with a message naming the first missing tool.
require = $(foreach t,$(1),$(if $(shell command -v $(t) 2>/dev/null),,$(error $@: '$(t)' is not installed or not on PATH; it is required by `make $@`)))

.PHONY: image kind-up kind-deploy kind-e2e kind-down manifests manifests-check

image: ## Build the container image (IMAGE=mlops:0.1.0)
	$(call require,docker)
	@docker info >/dev/null 2>&1 || { echo "image: the docker daemon is not reachable (is it running?)" >&2; exit 2; }
	@case "$(IMAGE_TAG)" in latest|"") echo "image: IMAGE_TAG must be a pinned version, not '$(IMAGE_TAG)'" >&2; exit 2;; esac
	docker build -t $(IMAGE) .

kind-up: ## Create the kind cluster from k8s/kind-config.yaml (if absent)
	$(call require,kind docker)
	@docker info >/dev/null 2>&1 || { echo "kind-up: the docker daemon is not reachable (is it running?)" >&2; exit 2; }
	@if kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
		echo "kind cluster $(KIND_CLUSTER) exists"; \
	else \
		kind create cluster --name $(KIND_CLUSTER) --config $(KIND_CONFIG) --wait 120s; \
	fi

# No --wait: the claim binds only for its first pod on kind (WaitForFirstConsumer) and
# the chart starts no pod at install (helm/helm#10733); see scripts/kind-e2e.sh.
kind-deploy: image kind-up ## Load the image into kind (docker save + kind load image-archive) and helm upgrade --install with values-dev.yaml
	$(call require,kind helm kubectl)
	@# docker save + image-archive: `kind load docker-image` fails with Docker 29's
	@# containerd image store (kind#3795).
	docker save -o .kind-image.tar $(IMAGE)
	kind load image-archive .kind-image.tar --name $(KIND_CLUSTER); rc=$$?; rm -f .kind-image.tar; exit $$rc
	helm upgrade --install $(HELM_RELEASE) $(CHART_DIR) --kube-context kind-$(KIND_CLUSTER) \
		-n $(K8S_NS) --create-namespace -f $(DEV_VALUES) \
		--set image.repository=$(IMAGE_NAME) --set image.tag=$(IMAGE_TAG) --timeout 5m

kind-down: ## Delete the kind cluster
	$(call require,kind)
	kind delete cluster --name $(KIND_CLUSTER)

kind-e2e: ## Throw-away kind cluster: install, run once, print the summary, tear down
	$(call require,docker kind helm kubectl)
	IMAGE=$(IMAGE) NAMESPACE=$(K8S_NS) RELEASE=$(HELM_RELEASE) scripts/kind-e2e.sh

manifests: ## Regenerate k8s/manifests/mlops.yaml from the chart (values-dev.yaml)
	@$(DEPLOY_PY) -c "import helm_python, yaml" 2>/dev/null || { \
		echo "manifests: needs the Python package helm-python-sdk (run: make dev)" >&2; exit 2; }
	$(DEPLOY_PY) scripts/render_manifests.py

manifests-check: ## Fail if k8s/manifests/mlops.yaml is out of date
	@$(DEPLOY_PY) -c "import helm_python, yaml" 2>/dev/null || { \
		echo "manifests-check: needs the Python package helm-python-sdk (run: make dev)" >&2; exit 2; }
	$(DEPLOY_PY) scripts/render_manifests.py --check
