"""Pytest fixtures around :class:`tests.fakes.kube.FakeKubeAPI`.

Import them into a test module (``from tests.fakes.kube_fixtures import kube_api, kubeconfig,
kube_client  # noqa: F401``) or list ``"tests.fakes.kube_fixtures"`` in ``pytest_plugins``.

* ``kube_api_factory``: call it with ``FakeKubeAPI`` keyword arguments to get a started server;
  every server it made is stopped at teardown.
* ``kube_api``: a started server with namespaces ``default`` and ``mlops``, ``command_map``
  ``{"mlops": [sys.executable, "-m", "mlops"]}`` and PVC ``mlops-data`` mapped to a tmp dir.
* ``kubeconfig``: path of a kubeconfig for ``kube_api`` (context namespace ``mlops``).
* ``kube_client``: a real ``kubernetes.client.ApiClient`` built from ``kubeconfig``, closed at
  teardown (so no sockets leak under ``filterwarnings = error``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.kube import FakeKubeAPI


@pytest.fixture
def kube_api_factory() -> Iterator[Callable[..., FakeKubeAPI]]:
    """Build started ``FakeKubeAPI`` servers; all are stopped at teardown."""
    made: list[FakeKubeAPI] = []

    def make(**kwargs: Any) -> FakeKubeAPI:
        api = FakeKubeAPI(**kwargs)
        made.append(api)
        return api.start()

    yield make
    for api in made:
        api.stop()


@pytest.fixture
def kube_api(
    kube_api_factory: Callable[..., FakeKubeAPI], tmp_path_factory: pytest.TempPathFactory
) -> FakeKubeAPI:
    """A started fake API server with namespaces ``default`` and ``mlops``."""
    return kube_api_factory(
        namespaces=("default", "mlops"),
        command_map={"mlops": [sys.executable, "-m", "mlops"]},
        pvc_dirs={"mlops-data": tmp_path_factory.mktemp("pvc-mlops-data")},
    )


@pytest.fixture
def kubeconfig(kube_api: FakeKubeAPI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig file for ``kube_api`` whose context namespace is ``mlops``."""
    return kube_api.write_kubeconfig(
        tmp_path_factory.mktemp("kube") / "kubeconfig", namespace="mlops"
    )


@pytest.fixture
def kube_client(kubeconfig: Path) -> Iterator[Any]:
    """A real ``kubernetes.client.ApiClient`` for ``kube_api``, closed at teardown."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        yield client
    finally:
        client.close()
