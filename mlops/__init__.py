"""mlops: a Kubernetes-native nightly retrain suite.

The public face of the library: versioned data, a model registry, a drift
monitor, and the pipeline that ties them together.
"""

from mlops.config import Config, load_config
from mlops.data import generate_synthetic_data
from mlops.drift import DriftReport, DriftSettings
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
from mlops.monitor import ModelMonitor, RetrainDecision
from mlops.pipeline import run_pipeline
from mlops.registry import ModelRegistry
from mlops.storage import Store, open_store
from mlops.training import train_model
from mlops.versioner import DataVersioner

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
    "generate_synthetic_data",
    "load_config",
    "open_store",
    "run_pipeline",
    "train_model",
]
