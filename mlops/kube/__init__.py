"""Kubernetes: the controller that runs a run as step Jobs, the manifests it builds, the
API client (the only ``kubernetes`` importer) and a run's own Dask cluster.

Modules, top to bottom (each imports only from those below it; ``lint-imports`` checks):

* :mod:`mlops.kube.controller` - one run as step Jobs: create or adopt, watch, resume.
* :mod:`mlops.kube.client` - credentials (kubeconfig or in cluster) and the API calls;
  the one translation of API errors.
* :mod:`mlops.kube.dask` - a run's own Dask cluster: its manifests (ReplicaSets and a
  Service, or a DaskCluster) and its life (create or adopt, wait, delete).
* :mod:`mlops.kube.manifests` - pure: the step Job and Event manifests from the config's
  ``kubernetes`` section.
"""
