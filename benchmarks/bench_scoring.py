"""B13: the score step on 1M rows vs a bare ``model.predict`` + ``to_parquet`` of the same rows.

Both sides read the same Parquet files (the batch to score: an id column and the
features of B11's mixed frame, no target), score them with the same model (the serving
model, loaded once through the registry before timing) and write Parquet. The score step
also checks every file's header, hashes the scored rows and the predictions (lineage and
the content-addressed id), writes ``probability_<class>`` columns and commits the
manifest. Its predictions folder is removed before each round, so every round writes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.config import Config
from mlops.runner import run_pipeline
from mlops.scoring import score_source
from mlops.store.registry import PRODUCTION
from mlops.store.workspace import Workspace

#: Files of the batch (one per partition, as a nightly batch lands).
FILES = 4


def setup(work: Path, rows: int, mixed_frame: Any) -> tuple[Workspace, Path, Any]:
    """A store whose serving model was trained on 20k mixed rows, and the batch files."""
    train, store, src = work / "b13-train.parquet", work / "b13-store", work / "b13-batch"
    mixed_frame(20_000, seed=1).to_parquet(train)
    src.mkdir(parents=True, exist_ok=True)
    batch = mixed_frame(rows, seed=2).drop(columns=["target"])
    batch.insert(0, "row_id", range(rows))
    step = -(-rows // FILES)
    for i in range(FILES):
        batch.iloc[i * step:(i + 1) * step].to_parquet(src / f"part-{i}.parquet", index=False)
    config = Config.from_dict({"storage": {"uri": str(store)},
                               "data": {"source": str(train)},
                               "scoring": {"source": str(src), "id_columns": ["row_id"]}})
    run_pipeline(Config.from_dict({**config.to_dict(), "scoring": {}}), run_id="b13-train")
    ws = Workspace.open(config)
    version = ws.registry.get_alias(PRODUCTION)
    assert version is not None
    model, _ = ws.registry.load(version)
    return ws, src, model


def ours(ws: Workspace) -> None:
    """The score step's work (the pandas engine)."""
    score_source(ws, "b13")


def bare(src: Path, out: Path, model: Any) -> None:
    """Read each file, ``model.predict``, write the ids and predictions with ``to_parquet``."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*.parquet")):
        df = pd.read_parquet(path)
        x = df.drop(columns=["row_id"])
        pd.DataFrame({"row_id": df["row_id"], "prediction": model.predict(x)}).to_parquet(
            out / path.name, index=False)


def fresh(ws: Workspace) -> None:
    shutil.rmtree(Path(ws.store.url().removeprefix("file://")) / "predictions",
                  ignore_errors=True)
