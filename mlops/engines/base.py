"""The one engine interface the steps call (:class:`Engine`), and what it returns.

An engine does the data work of the steps on its own kind of data: the pandas engine
(:mod:`mlops.engines.pandas`) on one frame in this process, the Dask engine
(:mod:`mlops.engines.dask`) on a partitioned version, partition by partition, on a
cluster. The steps (:mod:`mlops.pipeline`) get one from :func:`mlops.engines.engine_for`
and never name it:

* ingest: :meth:`Engine.ingest` validates and registers the source -> :class:`Ingested`;
* monitor-check: :meth:`Engine.batch` opens a data version as a :class:`Batch`: its task,
  its columns (for the schema check) and its :class:`~mlops.monitor.BatchProfile`
  (statistics for drift, the serving model's metrics on its unseen rows), which
  :meth:`mlops.monitor.ModelMonitor.decide` turns into the retrain decision; a batch
  without its target (late labels, docs/labels.md) is scored by
  :meth:`Engine.score_version` instead, its predictions stored with their ids;
* train: :meth:`Engine.trainer` gives the :class:`Trainer` of the split (of the
  version, or of a training window's labelled rows);
* score: :meth:`Engine.score` writes a predictions version of ``scoring.source``: per
  row its id columns, the prediction and the probability of each class
  (:mod:`mlops.scoring`).

Each implementation keeps its facts where they are exact for it: the pandas engine's
drift statistics come from the values, the Dask engine's from merged sketches (see
:mod:`mlops.drift`'s statistics table); both give the same decisions
(``tests/test_dask_engine.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd

    from mlops.config import Config
    from mlops.monitor import BatchProfile
    from mlops.schema import InputSchema
    from mlops.scoring import Scored
    from mlops.store.workspace import Workspace


@dataclass(frozen=True)
class Ingested:
    """What an engine's ingest registered.

    Attributes:
        data_version: The data version id.
        rows: Rows of the batch.
        feature_means: Mean of each numeric feature.
        feature_kinds: Feature name -> ``numeric``, ``bool`` or ``categorical``.
        source_files: The files read (``{"path", "size_bytes"}``; empty for synthetic).
        task: ``classification`` or ``regression`` (``data.task`` or what ``auto`` decided).
        too_few_rows: Why the batch is too small to train on ("" when it is not).
        warnings: What looks wrong in the table but was accepted.
        unlabelled: The batch has no target column (``labels`` configured: it is scored
            and drift-checked, its labels come later; ``task`` is then "").
    """

    data_version: str
    rows: int
    feature_means: dict[str, float]
    feature_kinds: dict[str, str]
    source_files: list[dict[str, Any]]
    task: str
    too_few_rows: str = ""
    warnings: list[str] = field(default_factory=list)
    unlabelled: bool = False


class IngestedVersion(Protocol):
    """What the later steps read of ingest's result (:class:`mlops.pipeline.IngestResult`)."""

    @property
    def data_version(self) -> str:
        """The data version id."""
        ...

    @property
    def task(self) -> str:
        """The decided task ("" in a result written before tasks were decided)."""
        ...

    @property
    def feature_kinds(self) -> dict[str, str]:
        """Feature name -> kind (empty in an older result)."""
        ...


class Batch(Protocol):
    """A data version as monitor-check sees it (opened by :meth:`Engine.batch`)."""

    #: ``classification`` or ``regression``.
    task: str

    def columns(self) -> pd.DataFrame:
        """The features (rows, or an empty frame of their columns and dtypes): what the
        serving model's input schema is compared with."""
        ...

    def profile(self, model: Any = None, names: list[str] | None = None,
                known: Any = None, calibration: Any = None) -> BatchProfile:
        """The batch's statistics, and ``model``'s metrics (every metric of the task) on
        its rows whose hash is not in ``known`` (the model's training rows; None: every
        row), given the columns ``names`` in that order (None: every feature); with
        ``calibration`` (the model's map, :mod:`mlops.performance.cbpe`) its CBPE estimates on the
        same rows too (``estimated_metrics``), from its probabilities alone.

        Raises:
            ValueError, KeyError, AttributeError, TypeError: ``model`` cannot score the
                batch (the step then takes the serving model as unusable).
        """
        ...


class Trainer(Protocol):
    """The data side of the train step: a split of one data version into training and
    held-out rows; a context manager around the step (the Dask engine holds its
    cluster)."""

    features: list[str]
    #: ``classification`` or ``regression``.
    task: str

    @property
    def train_rows(self) -> int:
        """Rows of the training split."""
        ...

    @property
    def test_rows(self) -> int:
        """Rows of the held-out split."""
        ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...

    def fit(self) -> tuple[Any, dict[str, Any]]:
        """The fitted model and facts to keep in its metadata."""
        ...

    def metrics(self, model: Any, names: list[str] | None = None
                ) -> dict[str, float | None]:
        """Every metric of the task for ``model`` on the held-out split."""
        ...

    def metrics_unseen(self, model: Any, names: list[str] | None, known: Any
                       ) -> tuple[dict[str, float | None], int]:
        """:meth:`metrics` on the held-out rows whose hash is not in ``known``, and how
        many rows that is."""
        ...

    def columns(self) -> pd.DataFrame:
        """The features (rows or an empty frame): for a champion's schema check."""
        ...

    def schema(self) -> InputSchema:
        """The input schema of the model trained here."""
        ...

    def reference(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`mlops.monitor.ModelMonitor.reference_document`:
        the training split's drift reference."""
        ...

    def training_rows(self) -> Any:
        """The sorted, unique hashes of the training split's rows."""
        ...

    def calibration(self, model: Any) -> dict[str, Any] | None:
        """A classifier's calibration map (:mod:`mlops.performance.cbpe`) from the held-out split,
        kept with the model version for monitor-check's estimates without labels."""
        ...


class Engine(Protocol):
    """The data work of the steps on one kind of data (see the module docstring)."""

    #: The ``data.engine`` value that selects it.
    name: str

    def ingest(self, config: Config, ws: Workspace) -> Ingested:
        """Read, validate and register ``data.source`` (nothing is written when it is
        invalid).

        Raises:
            DataValidationError: The source is missing or invalid.
            ConfigError: A metric or training setting that does not fit the task.
        """
        ...

    def batch(self, config: Config, ws: Workspace, ingested: IngestedVersion) -> Batch:
        """The data version ``ingested`` names, for monitor-check."""
        ...

    def trainer(self, config: Config, ws: Workspace, ingested: IngestedVersion,
                rows: pd.DataFrame | None = None) -> Trainer:
        """The train step's split of the data version ``ingested`` names, or of ``rows``:
        a training window's labelled rows (:func:`mlops.performance.labels.training_frame`)."""
        ...

    def score(self, ws: Workspace, run_id: str) -> Scored:
        """Score ``scoring.source`` with the serving model: a predictions version with,
        per row, its id columns, the prediction and each class's probability.

        Raises:
            BadInputError: No source, no serving model, or a missing column.
        """
        ...

    def score_version(self, ws: Workspace, run_id: str, data_version: str, model: Any,
                      metadata: Mapping[str, Any], model_version: str,
                      id_columns: Sequence[str]) -> Scored:
        """Score a stored data version (an unlabelled batch) with ``model``: a predictions
        version with its ``id_columns`` (:func:`mlops.scoring.score_data_version`).

        Raises:
            BadInputError: An id or feature column is missing (nothing is written).
        """
        ...


def check_task_settings(config: Config, task: str | None = None) -> None:
    """Validate, before anything is written, what needs the task: the gating metric
    (``monitoring.metric`` of the task) and ``training.params`` (``task``: the decided
    task; None: ``data.task`` when it is not ``auto``). Every engine's ingest calls it
    before its version is committed.

    Raises:
        ConfigError: A metric of the other task, or bad training settings (exit 2,
            naming the key).
    """
    from mlops.decisions import gate
    from mlops.training import check_training

    task = task or (config.data.task if config.data.task != "auto" else None)
    if task is None:
        return
    gate(config, task)
    check_training(config.training, task)


__all__ = ["Batch", "Engine", "Ingested", "IngestedVersion", "Trainer", "check_task_settings"]
