"""cluster.yaml (AWS) and cluster-local.yaml (on premises) are configs Ray's cluster
launcher accepts, checked offline with Ray's own code: ``prepare_config`` fills in the
provider's defaults as ``ray up`` does, then ``validate_config`` checks the result
against Ray's JSON schema (``ray/autoscaler/ray-schema.json``). Nothing reaches a cloud:
``ray up`` would next call the provider (AWS) to look up the machines, which is where
this check stops.

Both files must also bring rafka up the same way: install the same wheel, run
``rafka up --address auto`` on the head once Ray is up, and nothing rafka-specific on the
workers (the controller starts their brokers when they join).
"""

from __future__ import annotations

import copy
import os

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_FILES = ["cluster.yaml", "cluster-local.yaml"]
RAFKA_UP = "RAY_AUTH_MODE=token rafka up --address auto"


def load(name: str) -> dict:
    with open(os.path.join(ROOT, name)) as handle:
        return yaml.safe_load(handle)


def validate_offline(config: dict) -> dict:
    """What ``ray up`` checks before it calls the cloud; returns the filled-in config."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_config_passes_rays_own_validation(name):
    prepared = validate_offline(load(name))
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_validation_rejects_a_misspelt_key():
    # The check is not vacuous: Ray's schema allows no unknown top-level key.
    with pytest.raises(jsonschema.ValidationError, match="max_wrokers"):
        validate_offline(dict(load("cluster.yaml"), max_wrokers=2))


def test_aws_config_keeps_a_fixed_number_of_workers():
    # The autoscaler would remove workers whose only actors are rafka's (they reserve
    # no CPU), taking brokers and replicas with them.
    config = load("cluster.yaml")
    assert config["provider"]["type"] == "aws" and config["provider"]["region"]
    workers = [node for name, node in config["available_node_types"].items() if name != config["head_node_type"]]
    assert workers and all(node["min_workers"] == node["max_workers"] for node in workers)
    assert sum(node["max_workers"] for node in workers) == config["max_workers"]


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_head_brings_rafka_up_after_ray_and_workers_only_join(name):
    config = load(name)
    head_commands = config["head_start_ray_commands"]
    assert head_commands[-1] == RAFKA_UP
    assert any("ray start --head" in command for command in head_commands[:-1])
    assert not any("rafka" in command for command in config["worker_start_ray_commands"])


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_setup_installs_the_wheel_the_file_mounts_ship_and_pins_this_ray(name):
    config = load(name)
    (remote_dir, local_dir), = [(remote, local) for remote, local in config["file_mounts"].items() if local == "./dist"]
    assert any(f"{remote_dir}/rafka-*.whl" in command for command in config["setup_commands"])
    assert f'pip install -U "ray[default]=={ray.__version__}"' in config["setup_commands"]


def test_local_variant_sketched_in_cluster_yaml_is_cluster_local_yaml_provider():
    with open(os.path.join(ROOT, "cluster.yaml")) as handle:
        lines = handle.read().splitlines()
    start = lines.index("# provider:")
    sketch = yaml.safe_load("\n".join(line[2:] for line in lines[start:] if line.startswith("# ")))
    assert sketch["provider"] == load("cluster-local.yaml")["provider"]
    validate_offline(dict(load("cluster-local.yaml"), provider=sketch["provider"]))


def test_both_files_install_and_start_rafka_the_same_way():
    aws, local = load("cluster.yaml"), load("cluster-local.yaml")
    assert [c for c in aws["setup_commands"] if "rafka" in c or "ray[" in c or "RAY_AUTH_MODE" in c] == local["setup_commands"]
    assert aws["file_mounts"] == local["file_mounts"]
    assert aws["head_start_ray_commands"][-1] == local["head_start_ray_commands"][-1] == RAFKA_UP


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_ray_start_turns_token_auth_on(name):
    # Without RAY_AUTH_MODE=token anyone who reaches the GCS or the dashboard port can
    # submit jobs (docs/security.md).
    config = load(name)
    starts = [command for key in ("head_start_ray_commands", "worker_start_ray_commands")
              for command in config[key] if "ray start" in command or "rafka " in command]
    assert starts and all("RAY_AUTH_MODE=token" in command for command in starts)
    assert any("export RAY_AUTH_MODE=token" in command for command in config["setup_commands"])
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_dashboard_listens_on_localhost_only(name):
    config = load(name)
    [head_start] = [command for command in config["head_start_ray_commands"] if "ray start --head" in command]
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in yaml.safe_dump(config)
