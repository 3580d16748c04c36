"""Kubernetes: the controller that runs a run as step Jobs (and, until they move here,
the manifests and the API client stay in :mod:`mlops.k8s`).

* :mod:`mlops.kube.controller` - one run as step Jobs: create or adopt, watch, resume.
"""
