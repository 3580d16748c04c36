"""mlops: a Kubernetes-native nightly retrain suite.

The public face of the library: versioned data, a model registry, a drift
monitor, and the pipeline that ties them together.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from mlops.config import Config, load_config
from mlops.errors import (
    BadInputError,
    ConfigError,
    DataValidationError,
    IntegrityError,
    InvalidVersionIdError,
    MLOpsError,
    StorageConfigError,
    StorageError,
    VersionExistsError,
    VersionNotFoundError,
)

if TYPE_CHECKING:
    from mlops.data import generate_synthetic_data
    from mlops.drift import DriftReport, DriftSettings
    from mlops.engines.drift_api import drift_report
    from mlops.monitor import ModelMonitor, RetrainDecision
    from mlops.runner import run_pipeline
    from mlops.store.filesystem import Store, open_store
    from mlops.store.registry import ModelRegistry
    from mlops.store.versioner import DataVersioner
    from mlops.training import train_model

# Imported on first use: pandas, scikit-learn and scipy take a second or more to load,
# which every `mlops` command (and every step Job's start) would otherwise pay.
_LAZY = {
    "generate_synthetic_data": "mlops.data",
    "DriftReport": "mlops.drift",
    "DriftSettings": "mlops.drift",
    "drift_report": "mlops.engines.drift_api",
    "ModelMonitor": "mlops.monitor",
    "RetrainDecision": "mlops.monitor",
    "run_pipeline": "mlops.runner",
    "ModelRegistry": "mlops.store.registry",
    "Store": "mlops.store.filesystem",
    "open_store": "mlops.store.filesystem",
    "train_model": "mlops.training",
    "DataVersioner": "mlops.store.versioner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlops' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "BadInputError",
    "Config",
    "ConfigError",
    "DataValidationError",
    "DataVersioner",
    "DriftReport",
    "DriftSettings",
    "IntegrityError",
    "InvalidVersionIdError",
    "MLOpsError",
    "ModelMonitor",
    "ModelRegistry",
    "RetrainDecision",
    "StorageConfigError",
    "StorageError",
    "Store",
    "VersionExistsError",
    "VersionNotFoundError",
    "__version__",
    "drift_report",
    "generate_synthetic_data",
    "load_config",
    "open_store",
    "run_pipeline",
    "train_model",
]
