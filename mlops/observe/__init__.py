"""What the operator sees of a run: status, the report, metrics, Events, webhooks, logs.

:mod:`mlops.observe.hooks` (the run's hooks), :mod:`mlops.observe.status` (``mlops
status``), :mod:`mlops.observe.report` (the HTML report), :mod:`mlops.observe.metrics`
(Prometheus), :mod:`mlops.observe.notify` (webhooks), :mod:`mlops.observe.logconf` (log
set-up) and :mod:`mlops.observe.httppost` (one outbound request).
"""
