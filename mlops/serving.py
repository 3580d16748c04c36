"""Serving exports: a model version in the folder layouts model servers load.

Two formats (``mlops export``, and on every promotion under
``serving/<version>/<format>/`` of the store):

* ``kserve``: ``model.joblib`` (the whole fitted Pipeline, preprocessing included: the
  one model file KServe's sklearn server accepts in its folder) and ``libraries.json``
  (the library versions it was pickled with and each file's sha256). A LightGBM model
  also gets its native text model, ``lightgbm/model.bst``, in a folder of its own as
  KServe's and MLServer's LightGBM runtimes expect; it takes the *preprocessed* feature
  matrix (the Pipeline's ``prep`` output), not raw rows.
* ``mlflow``: an MLflow model directory: ``MLmodel`` (``python_function`` and
  ``sklearn`` flavors, a signature from the model's input schema), ``model.pkl`` (plain
  pickle), ``requirements.txt`` and ``python_env.yaml``. Written here without MLflow.

The pickle in both holds only scikit-learn, LightGBM, NumPy, pandas and standard library
objects, so it loads where ``mlops`` is not installed: :func:`portable` replaces the
preprocessing helpers of :mod:`mlops.training` that saved models refer to by import path
(``as_float``, ``as_strings``, ``FrameCodes``) with scikit-learn transformers that compute
the same values (``FunctionTransformer`` over pandas methods, ``OrdinalEncoder``). The
registry keeps the model as it was saved; stores written earlier keep loading in mlops.

Commit rule: an export's files are written payload first, its commit file last with an
exclusive create (``libraries.json`` for kserve, ``MLmodel`` for mlflow, the file a
server reads first). A folder without its commit file is unfinished and is written
again (its payload overwritten) by the next attempt; a folder with it is complete and
never rewritten.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import io
import json
import operator
import pickle
import platform
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

from mlops.choices import BOOL, CATEGORICAL, KSERVE, MLFLOW, SERVING_FORMATS
from mlops.errors import BadInputError, ExportError
from mlops.records import ModelRecord
from mlops.store import layout
from mlops.store.filesystem import Store
from mlops.store.registry import ModelRegistry
from mlops.training import MISSING_CATEGORY, FrameCodes, as_float, as_strings

#: The file whose presence makes an export complete (written last, exclusively).
COMMIT_FILE = {KSERVE: "libraries.json", MLFLOW: "MLmodel"}
#: The pickled model of each format.
MODEL_FILE = {KSERVE: "model.joblib", MLFLOW: "model.pkl"}
#: The native LightGBM text model of a kserve export (a folder of its own).
LIGHTGBM_MODEL = "lightgbm/model.bst"
#: Top-level packages an exported pickle may refer to (a model server has them).
PORTABLE_MODULES = frozenset({"sklearn", "lightgbm", "numpy", "pandas", "scipy", "operator",
                              "functools", "builtins", "copyreg", "collections", "_codecs",
                              "datetime"})
#: A category list for a categorical feature that had none in training (every value is
#: then unseen, as in FrameCodes); no real value equals it.
_NO_CATEGORY = "\x00mlops:no-category"


# --- scikit-learn equivalents of the mlops.training helpers -------------------------------
def _calls(*calls: Callable[[Any], Any]) -> Pipeline:
    return Pipeline([(f"step{i}", FunctionTransformer(c, feature_names_out="one-to-one"))
                     for i, c in enumerate(calls)])


def bool_floats() -> Pipeline:
    """As :func:`mlops.training.as_float`: True 1.0, False 0.0, missing NaN (float64)."""
    return _calls(operator.methodcaller("astype", "Float64"),
                  operator.methodcaller("to_numpy", dtype="float64", na_value=np.nan))


def category_strings(missing: Any = MISSING_CATEGORY) -> Pipeline:
    """As :func:`mlops.training.as_strings`: each value as ``str``, a missing one as
    ``missing`` (an object array)."""
    return _calls(operator.methodcaller("astype", object),
                  operator.methodcaller("astype", "string"),
                  operator.methodcaller("to_numpy", dtype=object, na_value=missing))


def numeric_floats() -> Pipeline:
    """As FrameCodes' numeric columns: ``pd.to_numeric(errors="coerce")`` as float64."""
    return _calls(operator.methodcaller("apply", pd.to_numeric, errors="coerce"),
                  operator.methodcaller("to_numpy", dtype="float64", na_value=np.nan))


def _fitted(pipe: Pipeline, like: Any) -> Pipeline:
    names = getattr(like, "feature_names_in_", None)
    if names is None:
        columns: list[Any] = list(range(int(getattr(like, "n_features_in_", 1))))
    else:
        columns = [str(n) for n in names]
    return pipe.fit(pd.DataFrame({c: pd.Series([], dtype=object) for c in columns}))


def _replace_helpers(obj: Any) -> Any:
    """``obj`` with each FunctionTransformer of as_float/as_strings replaced (in place for
    Pipelines and ColumnTransformers)."""
    if isinstance(obj, FunctionTransformer) and obj.func in (as_float, as_strings):
        return _fitted(bool_floats() if obj.func is as_float else category_strings(), obj)
    if isinstance(obj, Pipeline):
        obj.steps = [(name, _replace_helpers(step)) for name, step in obj.steps]
    elif isinstance(obj, ColumnTransformer):
        obj.transformers = [(n, _replace_helpers(t), c) for n, t, c in obj.transformers]
        if hasattr(obj, "transformers_"):
            obj.transformers_ = [(n, _replace_helpers(t), c) for n, t, c in obj.transformers_]
    return obj


def _runs(kinds: dict[str, str]) -> list[tuple[str, list[str]]]:
    runs: list[tuple[str, list[str]]] = []
    for col, kind in kinds.items():
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(col)
        else:
            runs.append((kind, [col]))
    return runs


def frame_codes_pipeline(codes: FrameCodes) -> Pipeline:
    """The scikit-learn Pipeline computing what ``codes`` (FrameCodes) computes: a float32
    frame, columns in ``kinds`` order; categories as their index in ``categories``
    (missing or unseen NaN)."""
    kinds = {str(c): k for c, k in (codes.kinds or {}).items()}
    categories = codes.categories or {}
    parts: list[tuple[str, Any, list[str]]] = []
    for i, (kind, cols) in enumerate(_runs(kinds)):
        if kind == CATEGORICAL:
            lists = [list(categories.get(c, [])) or [_NO_CATEGORY] for c in cols]
            part: Any = Pipeline([
                ("strings", category_strings(missing=None)),
                ("codes", OrdinalEncoder(categories=lists, handle_unknown="use_encoded_value",
                                         unknown_value=np.nan, encoded_missing_value=np.nan,
                                         dtype=np.float64))])
        elif kind == BOOL:
            part = bool_floats()
        else:
            part = numeric_floats()
        parts.append((f"{kind}{i}", part, cols))
    columns = ColumnTransformer(parts, sparse_threshold=0.0)
    pipe = Pipeline([("columns", columns),
                     ("float32", FunctionTransformer(functools.partial(
                         pd.DataFrame, columns=list(kinds), dtype="float32")))])
    first: dict[str, Any] = {c: next(iter(categories.get(c, [])), None) for c in kinds}
    sample = {c: [first[c] if k == CATEGORICAL else True if k == BOOL else 0.0]
              for c, k in kinds.items()}
    return pipe.fit(pd.DataFrame(sample, columns=list(kinds)))


def probe_frame(schema: dict[str, Any] | None) -> pd.DataFrame | None:
    """Raw rows of every feature kind from a model's input schema: each training
    category, a missing value and one never seen; numbers, bools and missing ones."""
    features = (schema or {}).get("features") or []
    if not features:
        return None
    columns: dict[str, list[Any]] = {}
    for f in features:
        kind = str(f.get("kind"))
        if kind == CATEGORICAL:
            columns[str(f["name"])] = [*map(str, f.get("categories") or []), None,
                                       "\x00unseen"]
        elif kind == BOOL:
            columns[str(f["name"])] = [True, False, None]
        else:
            columns[str(f["name"])] = [0.0, 1.5, -3.25, None]
    n = max(len(v) for v in columns.values())
    frame = pd.DataFrame({c: pd.Series([v[i % len(v)] for i in range(n)], dtype=object)
                          for c, v in columns.items()})
    for f in features:
        if str(f.get("kind")) not in (CATEGORICAL, BOOL):
            frame[str(f["name"])] = frame[str(f["name"])].astype("float64")
    return frame


def _check_same(model: Any, served: Any, probe: pd.DataFrame | None) -> None:
    if probe is None:
        return
    try:
        want = [np.asarray(model.predict(probe))]
        if hasattr(model, "predict_proba"):
            want.append(np.asarray(model.predict_proba(probe)))
    except Exception:  # the probe does not suit this model: nothing to compare
        return
    try:
        got = [np.asarray(served.predict(probe))]
        if hasattr(model, "predict_proba"):
            got.append(np.asarray(served.predict_proba(probe)))
    except Exception as err:
        raise ExportError(f"the portable copy of the model cannot predict probe rows the "
                          f"registry's model predicts ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); not exporting "
                          "it") from err
    if not all(np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
               for a, b in zip(want, got, strict=True)):
        raise ExportError("the portable copy of the model predicts differently from the "
                          "registry's model on probe rows; not exporting it")


def portable(model: Any, schema: dict[str, Any] | None = None) -> Any:
    """A copy of ``model`` whose pickle refers only to :data:`PORTABLE_MODULES`.

    With the model's input ``schema`` (its record's), the copy must predict exactly as
    ``model`` on :func:`probe_frame` rows.

    Raises:
        ExportError: The model holds an object of another package (named), or the copy
            predicts differently.
    """
    original = model
    model = copy.deepcopy(model)
    if isinstance(model, Pipeline):
        model.steps = [(name, frame_codes_pipeline(step) if isinstance(step, FrameCodes)
                        else _replace_helpers(step)) for name, step in model.steps]
    else:
        model = _replace_helpers(model)
    foreign = sorted(m for m in pickled_modules(model)
                     if m.split(".")[0] not in PORTABLE_MODULES)
    if foreign:
        raise ExportError(f"model of type {type(model).__name__} refers to "
                          f"{', '.join(foreign)}, which a model server does not have")
    _check_same(original, model, probe_frame(schema))
    return model


class _Sink:
    """A file that keeps nothing (the recorder needs the pickling, not the bytes)."""

    def write(self, data: bytes) -> int:
        return len(data)


class _Recorder(pickle.Pickler):
    def __init__(self) -> None:
        super().__init__(_Sink(), protocol=pickle.HIGHEST_PROTOCOL)
        self.modules: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        named = isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__"))
        module = obj.__module__ if named else type(obj).__module__
        self.modules.add(str(module))
        return NotImplemented


def pickled_modules(obj: Any) -> set[str]:
    """The modules of every class and function the pickle of ``obj`` refers to."""
    recorder = _Recorder()
    recorder.dump(obj)
    return recorder.modules


# --- the files of an export ---------------------------------------------------------------
@dataclass(frozen=True)
class Export:
    """The files of one export, in write order (the commit file last)."""

    fmt: str
    version_id: str
    files: tuple[tuple[str, bytes], ...]

    @property
    def commit_file(self) -> str:
        """The file written last (see the module docstring)."""
        return COMMIT_FILE[self.fmt]


def _lib_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _libraries(model: Any) -> dict[str, str]:
    names = ["scikit-learn", "numpy", "pandas", "scipy", "joblib"]
    if _booster(model) is not None:
        names.append("lightgbm")
    return {n: v for n in names if (v := _lib_version(n)) is not None}


def _booster(model: Any) -> Any:
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    return getattr(final, "booster_", None) if type(final).__module__.startswith(
        "lightgbm") else None


def _mlflow_type(kind: str) -> str:
    # Numbers as double: a JSON request's numbers (and nulls) parse into a double column,
    # and a missing value makes an integer column float anyway (MLflow refuses float data
    # in a long column). Bools may be missing too: boolean takes an object column.
    return {CATEGORICAL: "string", BOOL: "boolean"}.get(kind, "double")


def signature(record: ModelRecord) -> dict[str, Any] | None:
    """The MLmodel ``signature`` of a model record's input schema (None without one)."""
    schema = record.training().schema
    if not schema or not schema.get("features"):
        return None
    inputs = [{"type": _mlflow_type(str(f["kind"])), "name": str(f["name"]),
               "required": True} for f in schema["features"]]
    return {"inputs": json.dumps(inputs), "outputs": None, "params": None}


def build_export(model: Any, record: ModelRecord, fmt: str) -> Export:
    """The files of the ``fmt`` export of a model version.

    Raises:
        BadInputError: Unknown format.
        ExportError: The model cannot be made portable.
    """
    if fmt not in SERVING_FORMATS:
        raise BadInputError(f"unknown export format {fmt!r} (use one of "
                            f"{', '.join(SERVING_FORMATS)})")
    model = portable(model, record.training().schema)
    libraries = _libraries(model)
    python = platform.python_version()
    files: list[tuple[str, bytes]] = []
    if fmt == KSERVE:
        import joblib

        buf = io.BytesIO()
        joblib.dump(model, buf)
        files.append((MODEL_FILE[KSERVE], buf.getvalue()))
        booster = _booster(model)
        if booster is not None:
            files.append((LIGHTGBM_MODEL, booster.model_to_string().encode()))
        doc = {"format": KSERVE, "model_version": record.id, "python": python,
               "libraries": libraries,
               "files": {name: hashlib.sha256(data).hexdigest() for name, data in files}}
        files.append((COMMIT_FILE[KSERVE], (json.dumps(doc, indent=1, sort_keys=True)
                                            + "\n").encode()))
        return Export(KSERVE, record.id, tuple(files))
    pickled = pickle.dumps(model, protocol=4)
    files.append((MODEL_FILE[MLFLOW], pickled))
    files.append(("requirements.txt", "".join(f"{n}=={v}\n" for n, v in libraries.items()
                                              if n != "joblib").encode()))
    env = {"python": python, "build_dependencies": ["pip", "setuptools", "wheel"],
           "dependencies": ["-r requirements.txt"]}
    files.append(("python_env.yaml", yaml.safe_dump(env, sort_keys=False).encode()))
    mlmodel: dict[str, Any] = {
        "flavors": {
            "python_function": {"env": {"virtualenv": "python_env.yaml"},
                                "loader_module": "mlflow.sklearn",
                                "model_path": MODEL_FILE[MLFLOW], "predict_fn": "predict",
                                "python_version": python},
            "sklearn": {"code": None, "pickled_model": MODEL_FILE[MLFLOW],
                        "serialization_format": "pickle",
                        "sklearn_version": libraries.get("scikit-learn")}},
        # A stable id per model version and content (the same export twice is identical).
        "model_uuid": uuid.uuid5(uuid.NAMESPACE_URL, f"mlops:{record.id}:"
                                 f"{hashlib.sha256(pickled).hexdigest()}").hex,
        "utc_time_created": record.created_at,
        "metadata": {"mlops_model_version": record.id}}
    sig = signature(record)
    if sig is not None:
        mlmodel["signature"] = sig
    files.append((COMMIT_FILE[MLFLOW], yaml.safe_dump(mlmodel, sort_keys=False).encode()))
    return Export(MLFLOW, record.id, tuple(files))


# --- where exports go -----------------------------------------------------------------------
def write_to_store(store: Store, export: Export) -> str:
    """Write ``export`` under ``serving/<version>/<format>/`` of ``store`` (see the commit
    rule in the module docstring); an export already complete is left as it is.

    Returns:
        The folder's key (relative to the store root).
    """
    folder = layout.serving_key(export.version_id, export.fmt)
    commit = f"{folder}/{export.commit_file}"
    if store.exists(commit):
        return folder
    for name, data in export.files:
        if name == export.commit_file:
            # Another writer may have completed the same version's export first.
            with contextlib.suppress(FileExistsError):
                store.write_bytes(commit, data, exclusive=True)
        else:
            store.write_bytes(f"{folder}/{name}", data)
    return folder


def serving_folder(version_id: str) -> str:
    """The folder of a version's exports, one subfolder per format (below the root)."""
    return f"{layout.SERVING}/{version_id}"


def serving_uri(store: Store, version_id: str | None) -> str | None:
    """The URI of ``version_id``'s export folder when its exports are complete, else None
    (a version promoted before exports existed, or by ``mlops promote``)."""
    if version_id is None or not all(exported(store, version_id, f) for f in SERVING_FORMATS):
        return None
    return store.url(serving_folder(version_id))


def export_for_serving(store: Store, registry: ModelRegistry, version_id: str) -> str:
    """Write each format's export of ``version_id`` under the store's ``serving/`` folder
    (formats already complete are skipped).

    Returns:
        The export folder's key (see :func:`serving_folder`).

    Raises:
        ExportError: The model cannot be made portable.
        VersionNotFoundError, IntegrityError: As :meth:`ModelRegistry.load`.
    """
    model: Any = None
    for fmt in SERVING_FORMATS:
        if exported(store, version_id, fmt):
            continue
        if model is None:
            model, _ = registry.load(version_id)
        write_to_store(store, build_export(model, registry.get_record(version_id), fmt))
    return serving_folder(version_id)


def exported(store: Store, version_id: str, fmt: str) -> bool:
    """Whether the store holds the complete ``fmt`` export of ``version_id``."""
    return store.exists(f"{layout.serving_key(version_id, fmt)}/{COMMIT_FILE[fmt]}")


def check_output_dir(output: Path) -> None:
    """Refuse an output folder that exists and is not empty, or is a file.

    Raises:
        BadInputError: Names the folder.
    """
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise BadInputError(f"--output {output}: exists and is not an empty folder "
                            "(exports are never written over)")


def write_to_dir(export: Export, output: Path) -> list[Path]:
    """Write ``export`` into the folder ``output`` (created; see :func:`check_output_dir`).

    Returns:
        The files written.
    """
    check_output_dir(output)
    written = []
    for name, data in export.files:
        path = output / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def formats(names: Iterable[str]) -> list[str]:
    """``names`` checked against :data:`SERVING_FORMATS`.

    Raises:
        BadInputError: An unknown format (named).
    """
    out = list(names)
    for name in out:
        if name not in SERVING_FORMATS:
            raise BadInputError(f"unknown serving format {name!r} (use one of "
                                f"{', '.join(SERVING_FORMATS)})")
    return out


# --- the KServe hand-off (pure: the controller does the API calls) -------------------------
#: The run's record of the hand-off (``runs/<run-id>/serving-handoff.json``).
HANDOFF = "serving-handoff"
#: Predictor keys of an InferenceService that name a storage location, and the export
#: folder (below ``serving/<version>/``) each loads.
_PREDICTOR_FOLDERS = {"sklearn": KSERVE, "lightgbm": f"{KSERVE}/lightgbm", "mlflow": MLFLOW}


def inference_service_patch(isvc: dict[str, Any], store: Store, version_id: str
                            ) -> tuple[dict[str, Any], str]:
    """The JSON merge patch pointing ``isvc``'s predictor at ``version_id``'s export.

    The predictor is ``spec.predictor.model`` (its ``modelFormat.name``: sklearn, lightgbm
    or mlflow chooses the folder) or a framework key (``sklearn``, ``lightgbm``). The URI
    names the version's immutable folder, never a moving alias.

    Returns:
        ``(patch, storage_uri)``.

    Raises:
        ExportError: No usable predictor, a model format without an export, or the
            version's export is not complete in the store.
    """
    name = (isvc.get("metadata") or {}).get("name", "?")
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    if isinstance(predictor.get("model"), dict):
        key = "model"
        fmt = str((predictor["model"].get("modelFormat") or {}).get("name") or "").lower()
    else:
        key = next((k for k in _PREDICTOR_FOLDERS if isinstance(predictor.get(k), dict)), "")
        fmt = key
    if fmt not in _PREDICTOR_FOLDERS:
        raise ExportError(f"InferenceService {name}: predictor {key or '(none)'} with model "
                          f"format {fmt or '(none)'}; mlops exports sklearn, lightgbm and "
                          "mlflow")
    folder = _PREDICTOR_FOLDERS[fmt]
    if not exported(store, version_id, folder.split("/")[0]):
        raise ExportError(f"model version {version_id} has no complete "
                          f"{folder.split('/')[0]} export in the store")
    if folder == f"{KSERVE}/lightgbm" and not store.exists(
            f"{serving_folder(version_id)}/{KSERVE}/{LIGHTGBM_MODEL}"):
        raise ExportError(f"InferenceService {name} serves lightgbm but model version "
                          f"{version_id} is not a LightGBM model")
    uri = store.url(f"{serving_folder(version_id)}/{folder}")
    return {"spec": {"predictor": {key: {"storageUri": uri}}}}, uri
