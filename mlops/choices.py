"""The closed sets of names a config may choose from, each written once.

:mod:`mlops.config` validates against them; :mod:`mlops.hashing` and
:mod:`mlops.drift` implement them. This module imports nothing, so the config (and
the quick CLI commands that load it) need not import numpy, pandas or SciPy.
"""

from __future__ import annotations

from typing import Literal, get_args

#: Content hash algorithms of data versions (``data.hash_algorithm``).
HashAlgorithm = Literal["sha256", "sha512", "blake2b"]
HASH_ALGORITHMS: tuple[str, ...] = get_args(HashAlgorithm)

#: Drift methods (``monitoring.drift_method``).
DriftMethod = Literal["mean_l1", "psi", "ks", "wasserstein", "auto"]
DRIFT_METHODS: tuple[str, ...] = get_args(DriftMethod)
