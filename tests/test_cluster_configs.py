"""The `ray up` configs under cluster/ and the `ray submit` entry script, checked offline.

Each YAML goes through what `ray up` does to a config before it contacts any cloud
(ray.autoscaler._private.commands._bootstrap_config): `prepare_config` (merge with the provider's
defaults.yaml; for the local provider, build its single node type) and then `validate_config`
(Ray's ray-schema.json plus its cross-field checks). The provider's own bootstrap step, which
calls the cloud APIs, is not run.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from ray.autoscaler._private.commands import _bootstrap_config
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"
CONFIGS = sorted(CLUSTER.glob("*.yaml"))
ENTRY = CLUSTER / "submit_entry.py"
PROJECT_REMOTE = "~/leap-ray"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def prepared(path: Path) -> dict:
    config = prepare_config(copy.deepcopy(load(path)))
    validate_config(config)
    return config


def node_types(raw: dict) -> tuple[str, dict, dict]:
    """(head type name, head type, worker types) of a config with available_node_types."""
    types = raw["available_node_types"]
    head = raw["head_node_type"]
    return head, types[head], {name: t for name, t in types.items() if name != head}


def test_at_least_three_cluster_configs():
    assert len(CONFIGS) >= 3, [p.name for p in CONFIGS]
    assert {"aws.yaml", "gcp.yaml", "local.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_passes_ray_cluster_config_validation(path):
    raw = load(path)
    assert raw["cluster_name"]
    assert isinstance(raw["max_workers"], int) and raw["max_workers"] >= 1
    config = prepared(path)
    assert config["head_node_type"] in config["available_node_types"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_head_and_worker_types(path):
    raw = load(path)
    if raw["provider"]["type"] == "local":
        # Ray's local provider cannot express node types: it refuses available_node_types (see
        # test_local_provider_refuses_node_types) and fills in one internal type for every
        # machine, whose CPUs and GPUs `ray start` detects. A GPU machine is just a worker_ips
        # entry, so the GPU-worker check does not apply; the head type is Ray's own.
        assert "available_node_types" not in raw and "head_node_type" not in raw
        assert raw["provider"]["head_ip"]
        assert len(raw["provider"]["worker_ips"]) >= 1
        assert prepared(path)["head_node_type"] == "local.cluster.node"
        return
    head, head_type, workers = node_types(raw)
    assert head_type["resources"].get("leap_server") == 1, "the head carries leap_server"
    assert all("leap_server" not in t["resources"] for t in workers.values())
    gpu = [name for name, t in workers.items() if t["resources"].get("GPU", 0) >= 1]
    cpu = [name for name, t in workers.items() if t["resources"].get("GPU", 0) == 0]
    assert gpu, f"no worker type with GPU resources: {sorted(workers)}"
    assert cpu, f"no CPU-only worker type: {sorted(workers)}"
    for t in workers.values():
        assert t["resources"].get("CPU", 0) >= 1
        assert t.get("min_workers", 0) == 0, "workers scale from zero"


def test_local_config_passes_ray_up_bootstrap():
    """For the local provider even the provider bootstrap step of `ray up` runs offline."""
    config = _bootstrap_config(load(CLUSTER / "local.yaml"), no_config_cache=True)
    node_type = config["available_node_types"]["local.cluster.node"]
    workers = len(config["provider"]["worker_ips"])
    assert node_type["min_workers"] == node_type["max_workers"] == workers


def test_local_provider_refuses_node_types():
    raw = load(CLUSTER / "local.yaml")
    raw["available_node_types"] = {"gpu": {"node_config": {}, "resources": {"GPU": 1}}}
    with pytest.raises(click.ClickException):
        prepare_config(raw)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_start_commands(path):
    raw = load(path)
    head = " ".join(raw["head_start_ray_commands"])
    assert "ray start --head" in head
    assert "--dashboard-host=127.0.0.1" in head, "the dashboard must stay on the head's loopback"
    assert "--dashboard-host=0.0.0.0" not in head
    assert """--resources='{"leap_server": 1}'""" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    workers = " ".join(raw["worker_start_ray_commands"])
    assert "ray start --address=$RAY_HEAD_IP:6379" in workers


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_setup_commands_install_the_project(path):
    raw_setup = load(path)["setup_commands"]
    setup = " ".join(raw_setup)
    assert f"pip install -q -r {PROJECT_REMOTE}/requirements.txt" in setup
    assert '"ray[default]==2.60.0"' in setup, "dashboard and Jobs API need ray[default]"
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in setup
    assert f"venv --seed --python 3.11 {PROJECT_REMOTE}/.venv" in setup
    assert f"source {PROJECT_REMOTE}/.venv/bin/activate" in setup
    # The venv is created before anything is installed into it.
    first_install = next(i for i, c in enumerate(raw_setup) if "pip install" in c)
    assert any("venv --seed" in c for c in raw_setup[:first_install])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_file_mounts_sync_the_project(path):
    mounts = load(path)["file_mounts"]
    assert mounts[f"{PROJECT_REMOTE}/leap_ray"] == "./leap_ray"
    assert mounts[f"{PROJECT_REMOTE}/requirements.txt"] == "./requirements.txt"
    assert mounts[f"{PROJECT_REMOTE}/configs"] == "./configs"
    for remote, local in mounts.items():
        if remote.startswith(PROJECT_REMOTE):
            assert (ROOT / local).exists(), f"{local} (relative to the repository root)"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_token_auth_is_shared_and_enabled(path):
    raw = load(path)
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("export RAY_AUTH_MODE=token" in c for c in raw["setup_commands"])
    text = path.read_text()
    assert "ray get-auth-token --generate" in text


# --- cluster/submit_entry.py ---------------------------------------------------------------


def run_entry(*args: str, home: Path | None, env_home: Path | None = None):
    env = dict(os.environ)
    env.pop("LEAP_RAY_HOME", None)
    if home is not None:
        env["LEAP_RAY_HOME"] = str(home)
    if env_home is not None:
        env["HOME"] = str(env_home)
    return subprocess.run(
        [sys.executable, str(ENTRY), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def fake_project(root: Path) -> Path:
    """A directory with a stand-in leap_ray package that reports how it was started."""
    package = root / "leap_ray"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "import os, sys\nprint('cwd=' + os.getcwd())\nprint('argv=' + ' '.join(sys.argv[1:]))\n"
    )
    return root


def test_entry_is_standard_library_only():
    import ast

    tree = ast.parse(ENTRY.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_entry_help():
    result = run_entry("--help", home=None)
    assert result.returncode == 0, result.stderr
    assert "--dry-run" in result.stdout and "LEAP_RAY_HOME" in result.stdout


def test_entry_dry_run_prints_the_command(tmp_path):
    home = fake_project(tmp_path / "proj")
    result = run_entry("--dry-run", "--config", "configs/atari27.yaml", home=home)
    assert result.returncode == 0, result.stderr
    cd_line, command = result.stdout.strip().splitlines()
    assert cd_line == f"cd {home}"
    assert command.split() == [
        sys.executable,
        "-m",
        "leap_ray",
        "train",
        "--address",
        "auto",
        "--config",
        "configs/atari27.yaml",
    ]


def test_entry_prefers_the_project_venv_and_keeps_an_explicit_address(tmp_path):
    home = fake_project(tmp_path / "proj")
    venv_python = home / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("")
    args = ("--config", "c.yaml", "--address=ray://10.0.0.1:10001", "--dry-run")
    result = run_entry(*args, home=home)
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip().splitlines()[1].split()
    assert command[0] == str(venv_python)
    assert command[1:] == ["-m", "leap_ray", "train", "--config", "c.yaml", args[2]]


def test_entry_defaults_to_home_leap_ray(tmp_path):
    fake_project(tmp_path / "leap-ray")
    result = run_entry("--dry-run", home=None, env_home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"cd {tmp_path / 'leap-ray'}"


def test_entry_without_a_synced_project_fails_clearly(tmp_path):
    result = run_entry("--dry-run", "--config", "x.yaml", home=tmp_path / "missing")
    assert result.returncode == 2
    assert "ray up" in result.stderr and "LEAP_RAY_HOME" in result.stderr


def test_entry_execs_leap_ray_train_in_the_project(tmp_path):
    home = fake_project(tmp_path / "proj")
    result = run_entry("--config", "configs/atari27.yaml", "--logdir", "/tmp/runs", home=home)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    cwd = next(line.removeprefix("cwd=") for line in lines if line.startswith("cwd="))
    assert Path(cwd).resolve() == home.resolve()
    expected = "argv=train --address auto --config configs/atari27.yaml --logdir /tmp/runs"
    assert expected in lines
