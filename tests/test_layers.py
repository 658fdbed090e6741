"""The import direction: maths (torch) <- suites and learners (gymnasium, ale-py, RLlib) <- the
distributed layer (Ray) <- the commands' drivers <- CLI. Only the distributed layer, the
commands that run on it and the RLlib learner import ray; nothing below them imports a Ray role;
the learner and the suite are each chosen in exactly one registry; learners hold no module
state."""

import ast
import typing
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "leap_ray"
RAY_ROLES = {
    "distributed/worker.py",
    "distributed/server.py",
    "distributed/pool.py",
    "distributed/launch.py",
    "driver.py",
    "evaluate.py",
    "sweep.py",
}
RLLIB_LEARNER = "learners/rllib_ppo.py"  # imports RLlib, which ships inside the ray package
RAY_FREE = [
    "meta",
    "suites",
    "learners/__init__.py",
    "learners/base.py",
    "learners/a2c",
    "config.py",
    "errors.py",
    "curves.py",
    "distributed/ledger.py",
    "distributed/telemetry.py",
    "distributed/signals.py",
    "checkpoint.py",
    "logger.py",
    "tasks.py",
    "runs.py",
    "export.py",
    "controls.py",
    "video.py",
    "intervals.py",
    "finetune.py",
    "train_task.py",
]
REGISTRIES = {"learners/__init__.py", "suites/__init__.py"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0] if node.level == 0 else node.module)
    return names


def full_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files(entry: str) -> list[Path]:
    path = PACKAGE / entry
    return sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []


def relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def role_modules() -> set[str]:
    return {"leap_ray." + name[:-3].replace("/", ".") for name in RAY_ROLES}


def test_every_module_is_placed_in_a_layer():
    placed = {relative(p) for entry in RAY_FREE for p in files(entry)}
    placed |= RAY_ROLES | {RLLIB_LEARNER, "cli.py", "__main__.py", "__init__.py"}
    placed |= {"distributed/__init__.py"}
    assert {relative(p) for p in PACKAGE.rglob("*.py")} == placed


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
            assert "ray" not in imported_modules(path), f"{relative(path)} imports ray"


def test_ray_free_layers_and_learners_import_no_ray_role():
    for entry in [*RAY_FREE, RLLIB_LEARNER]:
        for path in files(entry):
            leaked = full_imports(path) & role_modules()
            assert not leaked, f"{relative(path)} imports the Ray role(s) {sorted(leaked)}"


def test_only_the_ray_roles_and_the_rllib_learner_import_ray():
    importers = {relative(p) for p in PACKAGE.rglob("*.py") if "ray" in imported_modules(p)}
    assert importers == RAY_ROLES | {RLLIB_LEARNER}, importers


def test_evaluate_and_finetune_do_not_import_the_meta_training_driver():
    for name in ("evaluate.py", "finetune.py", "train_task.py"):
        assert "leap_ray.driver" not in full_imports(PACKAGE / name), name


def test_the_rllib_learner_takes_only_rllib_from_ray():
    names = full_imports(PACKAGE / RLLIB_LEARNER)
    from_ray = {name for name in names if name.split(".")[0] == "ray"}
    assert from_ray and all(n.startswith(("ray.rllib.", "ray.tune.registry")) for n in from_ray)


def test_ray_free_layers_import_the_rllib_learner_only_inside_functions():
    """An A2C run never imports RLlib: nothing imports it at module level (the registry
    imports it by name when the RLlib learner is asked for)."""
    for path in PACKAGE.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module-level statements only
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = {alias.name for alias in node.names}
                names |= {getattr(node, "module", None) or ""}
                assert not any("rllib_ppo" in name for name in names), relative(path)


def _reads_the_learner_or_suite(node: ast.AST) -> bool:
    """`cfg.learner`, `self.cfg.learner`, `x.suite`: reading which learner or suite is set."""
    if not isinstance(node, ast.Attribute):
        return False
    if node.attr == "suite":
        return True
    owner = node.value
    is_cfg = (isinstance(owner, ast.Name) and owner.id in ("cfg", "config")) or (
        isinstance(owner, ast.Attribute) and owner.attr == "cfg"
    )
    return node.attr == "learner" and is_cfg


def test_only_the_registries_choose_a_learner_or_a_suite():
    from leap_ray.config import Config, EnvConfig
    from leap_ray.learners import LEARNERS
    from leap_ray.suites import SUITES

    learners = set(typing.get_args(Config.model_fields["learner"].annotation))
    suites = set(typing.get_args(EnvConfig.model_fields["suite"].annotation))
    assert set(LEARNERS) == learners and set(SUITES) == suites
    for path in PACKAGE.rglob("*.py"):
        if relative(path) in REGISTRIES | {"config.py"}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            assert not _reads_the_learner_or_suite(node), f"{relative(path)}:{node.lineno}"
            if isinstance(node, ast.Compare):
                for side in [node.left, *node.comparators]:
                    named = isinstance(side, ast.Constant) and side.value in learners | suites
                    assert not named, f"{relative(path)}:{node.lineno} compares {side.value!r}"


MUTATORS = {"append", "extend", "setdefault", "pop", "update", "clear", "add", "insert"}


def test_learners_hold_no_mutable_module_state():
    """What a learner records for its caller is returned, not left in a module-level container
    that works only while everything runs in one process."""
    for entry in ("learners", "suites"):
        for path in files(entry):
            tree = ast.parse(path.read_text())
            module_names = {
                target.id
                for node in tree.body
                if isinstance(node, ast.Assign | ast.AnnAssign)
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
                if isinstance(target, ast.Name)
            }
            for node in ast.walk(tree):
                assert not isinstance(node, ast.Global), f"{relative(path)}: global statement"
                changed = None
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    if node.func.attr in MUTATORS and isinstance(node.func.value, ast.Name):
                        changed = node.func.value.id
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "next":
                    changed = getattr(node.args[0], "id", None) if node.args else None
                if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
                    changed = getattr(node.value, "id", None)
                assert changed not in module_names, f"{relative(path)}: changes {changed}"
