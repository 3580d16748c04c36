"""Overhead removed from ``mlops run`` (issue 24 item 4; timed in ``make bench`` B6/B11):
what is now computed on the other core while the model fits must be what was computed
after it."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.run import mixed_frame
from mlops.config import Config
from mlops.engines.pandas import PandasTrainer
from mlops.pipeline import ingest
from mlops.workspace import Workspace


def test_drift_reference_built_during_fit_is_the_monitors(tmp_path: Path) -> None:
    src = tmp_path / "mixed.parquet"
    mixed_frame(3_000).to_parquet(src)
    cfg = Config.from_dict({"storage": {"uri": str(tmp_path / "store")},
                            "data": {"source": str(src)},
                            "monitoring": {"psi_bins": 7, "reference_sample_size": 500}})
    ws = Workspace.open(cfg)
    ingested = ingest(cfg, "run-1", ws)
    trainer = PandasTrainer(cfg, ws, ingested)
    trainer.fit()
    during = ws.monitor.reference_document(**trainer.reference())
    after = ws.monitor.reference_document(trainer.reference()["feature_means"],
                                          reference_frame=trainer.x_train)
    assert set(during["distribution"]["features"]) == set(trainer.features)
    for doc in (during, after):
        doc.pop("updated_at")
    assert json.dumps(during, sort_keys=True) == json.dumps(after, sort_keys=True)
