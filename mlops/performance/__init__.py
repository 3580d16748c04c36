"""The serving model's performance beyond its held-out split: realized from labels that
arrive later (:mod:`mlops.performance.labels`) and estimated without labels, by CBPE
(:mod:`mlops.performance.cbpe`)."""
