"""serve_config.yaml is a valid `serve deploy` config whose import path builds our app."""
from pathlib import Path

import yaml
from ray.serve.schema import ServeDeploySchema

ROOT = Path(__file__).resolve().parents[2]


def test_serve_config_is_valid_and_points_at_the_app() -> None:
    config = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "serve_config.yaml").read_text()))
    [app] = config.applications
    assert app.route_prefix == "/"
    module, attr = app.import_path.split(":")
    builder = getattr(__import__(module, fromlist=[attr]), attr)
    assert callable(builder)
    names = {d.name for d in app.deployments}
    from sentinel_ray.serve import deployments

    assert names == {deployments.ApiIngress.name, deployments.OperationsService.name}

