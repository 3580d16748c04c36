"""The node a fake pod runs on: as many CPUs as the fake says, not this machine's.

Real nodes have 8, 16, 64 cores; this machine has 2, which hides every bug that divides by
the CPU count (distributed's ``memory_limit: auto`` is memory x threads / CPU count). The
fake's kubelet sets ``$FAKE_NODE_CPUS`` (``FakeKubeAPI.node_cpus``) in every container it
starts; a process that runs through this module (``python -m tests.fakes.kube.node dask
worker ...``, the fake's stand-in for the image's ``dask`` command) then sees that many CPUs
in ``dask.system.CPU_COUNT`` and in distributed's defaults, as on such a node without a CPU
limit. :func:`fake_cpu_count` does the same inside the test process (a LocalCluster's
nannies compute their workers' limits there).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping

ENV_CPUS = "FAKE_NODE_CPUS"


def _set(count: int) -> int:
    import dask.system

    before = int(dask.system.CPU_COUNT)
    dask.system.CPU_COUNT = count
    # distributed copies the value at import ("from dask.system import CPU_COUNT") and binds
    # it as parse_memory_limit's default: patch the copies that decide a worker's memory.
    import distributed.deploy.local as local
    import distributed.nanny as nanny
    import distributed.worker as worker
    import distributed.worker_memory as memory

    for module in (local, nanny, worker, memory):
        module.CPU_COUNT = count  # type: ignore[attr-defined]
    memory.parse_memory_limit.__defaults__ = (count,)
    return before


def apply(env: Mapping[str, str] | None = None) -> int | None:
    """Make this process see ``$FAKE_NODE_CPUS`` CPUs (nothing when unset)."""
    value = (os.environ if env is None else env).get(ENV_CPUS)
    if not value:
        return None
    _set(int(value))
    return int(value)


@contextlib.contextmanager
def fake_cpu_count(count: int) -> Iterator[None]:
    """While active, this process (and a LocalCluster started in it) sees ``count`` CPUs."""
    before = _set(count)
    try:
        yield
    finally:
        _set(before)


def main(argv: list[str]) -> None:
    """``python -m tests.fakes.kube.node dask ARGS``: the dask CLI on the fake node."""
    apply()
    if not argv or argv[0] != "dask":
        raise SystemExit(f"tests.fakes.kube.node: unsupported command {argv[:1]}")
    from dask.__main__ import main as dask_main

    sys.argv = ["dask", *argv[1:]]
    dask_main()


if __name__ == "__main__":
    main(sys.argv[1:])
