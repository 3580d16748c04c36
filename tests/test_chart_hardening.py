"""Chart values that would render an unsafe or invalid release are refused (issue #13 item 12).

Rendered with the real Helm engine (helm-python-sdk): a ServiceAccount-less binding to
the namespace's ``default`` account, secrets in ``env`` (plain text in the ConfigMap and
pod specs), ``resources.limits: null``, and mount paths colliding with the chart's own.
"""

from __future__ import annotations

from typing import Any

import helm_python  # a dev dependency: missing, the suite fails rather than skips
import pytest

from tests.chart_render import by_kind, merge_values, render_chart, render_raw


@pytest.mark.parametrize(("values", "message"), [
    ({"serviceAccount": {"create": False}}, "serviceAccount.name"),
    ({"serviceAccount": {"create": False, "name": ""}}, "serviceAccount.name"),
    ({"env": {"AWS_SECRET_ACCESS_KEY": "x"}}, "env.AWS_SECRET_ACCESS_KEY"),
    ({"env": {"db_password": "x"}}, "credentials.existingSecret"),
    ({"env": {"GITHUB_TOKEN": "x"}}, "env.GITHUB_TOKEN"),
    ({"persistence": {"enabled": True, "mountPath": "/tmp"}}, "persistence.mountPath"),
    ({"persistence": {"enabled": True, "mountPath": "/etc/mlops/data"}}, "/etc/mlops"),
    ({"persistence": {"enabled": True, "mountPath": "/etc"}}, "/etc/mlops"),
    ({"persistence": {"enabled": True, "mountPath": "/"}}, "root filesystem"),
    ({"credentials": {"existingSecret": "s", "mount": True, "mountPath": "/tmp/keys"}},
     "credentials.mountPath"),
    ({"credentials": {"existingSecret": "s", "mount": True, "mountPath": "/data/keys"},
      "persistence": {"enabled": True, "mountPath": "/data"}}, "collide"),
])
def test_unsafe_values_fail_with_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError, match=message.replace(".", r"\.")):
        render_raw(merge_values(values))


@pytest.mark.parametrize("values", [
    {"steps": {"train": {"resources": {"limits": None}}}},
    {"controller": {"resources": {"limits": None}}},
])
def test_missing_limits_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError, match="limits"):
        render_raw(merge_values(values))


def test_safe_values_still_render() -> None:
    rendered = render_chart({"serviceAccount": {"create": False, "name": "runner"},
                             "env": {"LOG_FORMAT": "json"},
                             "persistence": {"enabled": True, "mountPath": "/data"}})
    binding = by_kind(rendered, "RoleBinding")
    assert binding and binding[0]["subjects"][0]["name"] == "runner"
