"""The workspace: a config's store, opened once, with its versioner, registry and monitor.

Below the steps (:mod:`mlops.pipeline`), the report and the run (:mod:`mlops.runner`):
each of them gets a :class:`Workspace` and reads or writes the store through it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mlops.config import Config, signing_key
from mlops.drift import DriftSettings
from mlops.errors import BadInputError, IntegrityError
from mlops.monitor import ModelMonitor, reference_problem
from mlops.store import layout
from mlops.store.filesystem import Store, open_store
from mlops.store.ids import iso, utc_now
from mlops.store.registry import PRODUCTION, ModelRegistry
from mlops.store.versioner import DataVersioner


class Serializable(Protocol):
    """What a step result offers the workspace: its JSON form."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""


@dataclass
class Workspace:
    """The store of a config, opened once, with its versioner, registry and monitor."""

    config: Config
    store: Store
    versioner: DataVersioner
    registry: ModelRegistry
    monitor: ModelMonitor

    @classmethod
    def open(cls, config: Config) -> Workspace:
        """Open the store named by ``config.storage``."""
        store = open_store(config.storage.uri, config.storage.options)
        return cls(
            config=config,
            store=store,
            versioner=DataVersioner(store.child(layout.DATA), config.data.hash_algorithm,
                                    keep_last_load=True),
            registry=ModelRegistry(store.child(layout.MODELS), signing_key=signing_key(config)),
            monitor=monitor_for(config, store.child(layout.MONITORING)),
        )

    # --- step results ------------------------------------------------------------------
    @staticmethod
    def result_key(run_id: str, step: str) -> str:
        """Key of a step's result (``runs/<run-id>/<step>.json``)."""
        return layout.step_result_key(run_id, step)

    def write_result(self, step: str, result: Serializable | Mapping[str, Any]) -> None:
        """Persist a step's result (a step result dataclass or a plain mapping)."""
        data = dict(result) if isinstance(result, Mapping) else result.to_dict()
        data = {**data, "step": step, "finished_at": iso(utc_now())}
        self.store.write_json(self.result_key(data["run_id"], step), data)

    def read_result(self, run_id: str, step: str) -> dict[str, Any] | None:
        """A step's persisted result, or None when the step has not finished."""
        try:
            data = self.store.read_json(self.result_key(run_id, step))
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None

    def require_result(self, run_id: str, step: str, needed_by: str) -> dict[str, Any]:
        """A step's result, or a BadInputError saying which step must run first."""
        data = self.read_result(run_id, step)
        if data is None:
            raise BadInputError(f"run '{run_id}' has no {step} result at "
                                f"{self.store.url(self.result_key(run_id, step))}: "
                                f"run {step} before {needed_by}")
        return data

    def list_runs(self) -> list[str]:
        """Run ids that have results, oldest first (run ids sort by time)."""
        return self.store.list_dirs(layout.RUNS)

    def current_model_version(self) -> str | None:
        """The model that serves now: the ``production`` alias.

        A store written before aliases existed has models but no alias: then the
        newest saved model serves, as it did before, except a challenger whose record
        says it was not promoted (a crash before the first alias write must not make a
        rejected challenger serve; issue 19 item 4).
        """
        version = self.registry.get_alias(PRODUCTION)
        if version is not None:
            return version
        for record in self.registry.list_records():
            if record.metadata.get("promote") is not False:
                return record.id
        return None


def monitor_for(config: Config, store: Store) -> ModelMonitor:
    """The monitor configured by ``config.monitoring`` on ``store``.

    Raises:
        ConfigError: A drift setting is out of range (naming the key).
    """
    m = config.monitoring
    settings = DriftSettings(method=m.drift_method, drift_threshold=m.drift_threshold,
                             drift_share=m.drift_share, psi_threshold=m.psi_threshold,
                             psi_bins=m.psi_bins, ks_p_value=m.ks_p_value,
                             wasserstein_threshold=m.wasserstein_threshold)
    return ModelMonitor(store, layout.METRICS, layout.REFERENCE, m.accuracy_min_threshold,
                        m.drift_threshold, m.drift_min_samples, drift=settings,
                        reference_sample_size=m.reference_sample_size)


def new_run_id() -> str:
    """A fresh, sortable, DNS-safe run id: ``YYYYMMDD-HHMMSS-xxxx``."""
    return utc_now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def serving_reference(ws: Workspace, version: str | None) -> tuple[Any, str | None]:
    """The drift reference of the serving model, or why there is none usable.

    The reference is kept with each model version (``models/<version>/reference.json``);
    a store written before that keeps one at ``monitoring/reference.json``, which still
    counts when it names this model (or no model at all).

    Returns:
        ``(reference, None)``, ``(None, None)`` when no model serves yet, or
        ``(None, why drift cannot be measured)``.
    """
    if version is None:
        return None, None
    where = ws.registry.store.url(ws.registry.reference_key(version))
    try:
        doc = ws.registry.get_reference(version)
        if doc is None:
            legacy = ws.monitor.get_reference()
            if legacy is not None and legacy.get("model_version") in (None, version):
                doc, where = legacy, ws.monitor.store.url(ws.monitor.drift_key)
    except IntegrityError as err:
        return None, f"the reference of model {version} is corrupt ({err})"
    if doc is None:
        return None, f"model {version} has no drift reference ({where} is missing)"
    problem = reference_problem(doc)
    if problem is not None:
        return None, f"{problem} ({where})"
    return doc, None
