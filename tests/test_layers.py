"""The import direction: maths (torch) <- learner (gymnasium, ale-py) <- task layer <- Ray roles
<- CLI. Only the Ray roles import ray, and nothing below them imports a Ray role."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "leap_ray"
RAY_ROLES = {"worker.py", "server.py", "pool.py", "driver.py", "evaluate.py"}
RLLIB_LEARNER = "rllib_ppo.py"  # a learner: imports RLlib, which ships inside the ray package
RAY_FREE = [
    "meta",
    "models.py",
    "a2c.py",
    "envs.py",
    "games.py",
    "rmsprop.py",
    "config.py",
    "curves.py",
    "ledger.py",
    "checkpoint.py",
    "logger.py",
    "tasks.py",
    "finetune.py",
    "train_task.py",
]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0] if node.level == 0 else node.module)
    return names


def files(entry: str) -> list[Path]:
    path = PACKAGE / entry
    return sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []


def test_meta_core_imports_only_torch_and_numpy():
    checked = files("meta")
    assert checked, "leap_ray/meta has no modules"
    allowed = {
        "torch",
        "numpy",
        "leap_ray",
        "__future__",
        "math",
        "collections",
        "copy",
        "dataclasses",
        "warnings",
    }
    for path in checked:
        assert imported_modules(path) <= allowed, f"{path.name}: {imported_modules(path) - allowed}"


def test_learner_layers_do_not_import_ray():
    for entry in RAY_FREE:
        for path in files(entry):
            assert "ray" not in imported_modules(path), f"{path.name} imports ray"


def test_ray_free_layers_import_no_ray_role():
    roles = {f"leap_ray.{name[:-3]}" for name in RAY_ROLES}
    for entry in RAY_FREE:
        for path in files(entry):
            leaked = imported_modules(path) & roles
            assert not leaked, f"{path.name} imports the Ray role(s) {sorted(leaked)}"


def test_only_the_ray_roles_and_the_rllib_learner_import_ray():
    importers = {path.name for path in PACKAGE.rglob("*.py") if "ray" in imported_modules(path)}
    assert importers == RAY_ROLES | {RLLIB_LEARNER}, importers


def test_the_rllib_learner_takes_only_rllib_from_ray():
    names = set()
    for node in ast.walk(ast.parse((PACKAGE / RLLIB_LEARNER).read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    from_ray = {name for name in names if name.split(".")[0] == "ray"}
    assert from_ray and all(n.startswith(("ray.rllib.", "ray.tune.registry")) for n in from_ray)
    roles = {f"leap_ray.{name[:-3]}" for name in RAY_ROLES}
    assert not names & roles, f"{RLLIB_LEARNER} imports the Ray role(s) {sorted(names & roles)}"


def test_ray_free_layers_import_the_rllib_learner_only_inside_functions():
    """An A2C run never imports RLlib: the task layer imports it only where it is used."""
    for entry in RAY_FREE:
        for path in files(entry):
            for node in ast.parse(path.read_text()).body:  # module-level statements only
                if isinstance(node, ast.ImportFrom):
                    imported = {alias.name for alias in node.names} | {node.module or ""}
                    assert not any("rllib_ppo" in name for name in imported), path.name
