"""The store's key layout: the one place that names folders and objects.

Every key the suite writes below a store root is built here; the versioner, the
registry, the monitor, the workspace, gc and retention import these names instead of
spelling them. The layout is the on-disk format: renaming anything here makes stores
written by earlier releases unreadable, so the names are those on disk today
(the data index is ``index``, the model index ``_index``)::

    data/objects/<ab>/<rest-of-hash>.parquet   data, addressed by its content hash
                                               (a whole version, or one partition)
    data/objects/<ab>/<rest>.stats-k<k>.json   a partition's moments and sketches
    data/fingerprints/<ab>/<rest>.json         source-file fingerprint -> partition hash
    data/index/<created>~<version-id>          empty marker: creation order from names
    data/versions/<version-id>.json            manifest: the commit point
    models/<version-id>/model-<sha[:16]>.joblib   the artifact
    models/<version-id>/metadata.json          the record: the commit point
    models/<version-id>/reference.json         the drift reference of that model, written
                                               before its alias may move (the alias move is
                                               the one commit point of a promotion)
    models/<version-id>/training-rows.npy      sorted uint64 hashes of its training rows
                                               (monitor-check scores only other rows)
    models/_index/<created>~<version-id>       empty marker
    models/_aliases/<alias>/events/<time>-<uuid>.json   one object per alias move
    models/_aliases/<alias>/current.json       pointer to the latest event
    monitoring/metrics/<time>-<uuid>.json      one object per metrics record
    monitoring/reference.json                  the drift reference of stores written
                                               before references moved to model folders
                                               (read as a fallback, no longer written)
    runs/<run-id>/<step>.json                  step results, summary.json, report.html
    serving/<version-id>/<format>/...          a promoted version's serving export
                                               (kserve, mlflow; see mlops.serving),
                                               immutable once its commit file exists
    predictions/objects/<ab>/<rest>.parquet    scored rows, addressed by their content hash
                                               (one object per scored source file)
    predictions/index/<created>~<version-id>   empty marker
    predictions/versions/<version-id>.json     predictions manifest: the commit point
                                               (``scoring.output`` may move this folder)
    labels/objects/<ab>/<rest>.parquet         label rows (ids + target) of one arrival
    labels/index/<created>~<version-id>        empty marker
    labels/versions/<version-id>.json          label manifest: the commit point
    monitoring/realized/<token>.json           a night's realized score from late labels

Functions named ``*_key`` return keys relative to their folder's store
(``store.child(DATA)``...); :func:`under` joins a folder and such a key into a key
relative to the root.
"""

from __future__ import annotations

# --- top-level folders ---------------------------------------------------------------
DATA = "data"
MODELS = "models"
MONITORING = "monitoring"
RUNS = "runs"
#: Serving exports of promoted model versions (one folder per version and format).
SERVING = "serving"
#: Batch predictions of the score step (the default of ``scoring.output``).
PREDICTIONS = "predictions"
#: Late labels (``labels.source``), versioned as data is (docs/labels.md).
LABELS = "labels"

# --- below data/ ---------------------------------------------------------------------
DATA_OBJECTS = "objects"
DATA_INDEX = "index"
DATA_VERSIONS = "versions"
#: The Dask engine's cache: source-file fingerprints -> partition hashes.
DATA_FINGERPRINTS = "fingerprints"

# --- below models/ -------------------------------------------------------------------
MODEL_INDEX = "_index"
MODEL_METADATA = "metadata.json"
#: The drift reference kept in each model version's folder.
MODEL_REFERENCE = "reference.json"
#: The sorted 64-bit hashes of the rows a model version was trained on (NumPy .npy).
MODEL_TRAINING_ROWS = "training-rows.npy"
ALIASES = "_aliases"
ALIAS_EVENTS = "events"
ALIAS_POINTER = "current.json"

# --- below monitoring/ ---------------------------------------------------------------
#: The folder of the metrics records (the seed's ``metrics_file`` without ``.json``).
METRICS = "metrics"
#: The drift reference document.
REFERENCE = "reference.json"
#: The realized scores of earlier nights, one object per (predictions, labels) pair.
REALIZED = "realized"

#: Separates the creation time from the id in an index marker's name.
INDEX_SEP = "~"


def under(folder: str, key: str) -> str:
    """``folder/key``: a folder-relative key made relative to the root."""
    return f"{folder}/{key}"


def data_object_key(digest: str) -> str:
    """The Parquet object of a content hash (below ``data/``)."""
    return f"{DATA_OBJECTS}/{digest[:2]}/{digest[2:]}.parquet"


def partition_stats_key(digest: str, k: int) -> str:
    """A partition's statistics and KLL sketches of accuracy ``k`` (below ``data/``)."""
    return f"{DATA_OBJECTS}/{digest[:2]}/{digest[2:]}.stats-k{k}.json"


def fingerprint_key(fingerprint_hash: str) -> str:
    """The cache entry of a source file's fingerprint hash (below ``data/``)."""
    return f"{DATA_FINGERPRINTS}/{fingerprint_hash[:2]}/{fingerprint_hash[2:]}.json"


def data_manifest_key(version_id: str) -> str:
    """The manifest of a data version (below ``data/``)."""
    return f"{DATA_VERSIONS}/{version_id}.json"


def index_marker_key(index: str, stamp: str, version_id: str) -> str:
    """The marker of ``version_id`` created at ``stamp`` in the index folder ``index``."""
    return f"{index}/{stamp}{INDEX_SEP}{version_id}"


def model_artifact_key(version_id: str, sha256: str) -> str:
    """The artifact of a model version (below ``models/``)."""
    return f"{version_id}/model-{sha256[:16]}.joblib"


def model_metadata_key(version_id: str) -> str:
    """The record of a model version (below ``models/``)."""
    return f"{version_id}/{MODEL_METADATA}"


def model_reference_key(version_id: str) -> str:
    """The drift reference of a model version (below ``models/``)."""
    return f"{version_id}/{MODEL_REFERENCE}"


def model_training_rows_key(version_id: str) -> str:
    """The hashes of the rows a model version was trained on (below ``models/``)."""
    return f"{version_id}/{MODEL_TRAINING_ROWS}"


def alias_events_prefix(alias: str) -> str:
    """The folder of an alias's events (below ``models/``)."""
    return f"{ALIASES}/{alias}/{ALIAS_EVENTS}"


def alias_pointer_key(alias: str) -> str:
    """The pointer to an alias's latest event (below ``models/``)."""
    return f"{ALIASES}/{alias}/{ALIAS_POINTER}"


def timestamped_name(stamp: str, token: str) -> str:
    """``<stamp>-<token>.json``: an alias event or a metrics record, never overwritten."""
    return f"{stamp}-{token}.json"


def run_key(run_id: str, name: str) -> str:
    """An object of a run (below the root): ``runs/<run-id>/<name>``."""
    return f"{RUNS}/{run_id}/{name}"


def step_result_key(run_id: str, step: str) -> str:
    """A step's (or the summary's) result: ``runs/<run-id>/<step>.json``."""
    return run_key(run_id, f"{step}.json")


def serving_key(version_id: str, fmt: str) -> str:
    """The folder of a model version's serving export (below the root)."""
    return f"{SERVING}/{version_id}/{fmt}"


def predictions_object_key(digest: str) -> str:
    """The Parquet object of scored rows (below the predictions folder, laid out as data
    objects are below ``data/``)."""
    return data_object_key(digest)


def predictions_manifest_key(version_id: str) -> str:
    """The manifest (commit point) of a predictions version (below its folder, laid out as
    data manifests are below ``data/``)."""
    return data_manifest_key(version_id)


def realized_key(token: str) -> str:
    """A realized-score record (below ``monitoring/``), named by what it was computed
    from (the predictions version and the label versions), so it is written once."""
    return f"{REALIZED}/{token}.json"
