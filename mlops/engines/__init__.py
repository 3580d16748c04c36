"""The engines that do the steps' data work: pandas (in process) and Dask (a cluster).

:func:`engine_for` gives the configured one (``data.engine``); the steps call it
through the :class:`~mlops.engines.base.Engine` interface and never name it. See
:mod:`mlops.engines.base`.
"""

from __future__ import annotations

from mlops.config import Config
from mlops.engines.base import Batch, Engine, Ingested, IngestedVersion, Trainer

#: The ``data.engine`` names of the implementations (each module is imported when chosen:
#: the package stays importable from the partitioned store below it, which uses its
#: sketches).
ENGINES = ("pandas", "dask")


def engine_for(config: Config) -> Engine:
    """The engine ``data.engine`` names (config validation allows only :data:`ENGINES`
    and ``auto``). The steps resolve ``auto`` before they call this
    (:mod:`mlops.engines.auto`: ingest by the source's estimated size, the later steps by
    ingest's result); a config still saying ``auto`` here (the score step) gets pandas."""
    if config.data.engine == "dask":
        from mlops.engines.dask import DaskEngine

        return DaskEngine()
    from mlops.engines.pandas import PandasEngine

    return PandasEngine()


__all__ = ["ENGINES", "Batch", "Engine", "Ingested", "IngestedVersion", "Trainer",
           "engine_for"]
