"""The corpus under tests/data/: each malformed config or checkpoint gives its one-line error
through the real CLI, with no traceback, and nothing is written."""

import re
import subprocess
from pathlib import Path

import pytest

from leap_ray.checkpoint import encoder_checkpoint, save_checkpoint
from leap_ray.cli import main
from leap_ray.config import load_config
from leap_ray.learners import initial_encoder
from leap_ray.suites import training_games
from tests.processes import run_cli
from tests.refusals import assert_refused

DATA = Path(__file__).resolve().parent / "data"
CONFIGS = sorted((DATA / "bad_configs").glob("*.yaml"))
IN_PROCESS = {"cuda_without_gpu", "impossible_resources"}  # and the rllib_* cases
CHECKPOINTS = {
    "empty_run": "no checkpoint found under",
    "only_temporary": "no checkpoint found under",
    "does_not_exist": "does not exist",
    "zero_length": "is not a leap-ray checkpoint (no checksum line)",
    "garbage": "is not a leap-ray checkpoint (no checksum line)",
    "no_checksum": "is not a leap-ray checkpoint (no checksum line)",
    "truncated": "is corrupt: its SHA-256 differs",
    "flipped_byte": "is corrupt: its SHA-256 differs",
    "not_leap_ray": "lacks the fields of a leap-ray checkpoint",
    "runs_code": "is unreadable: Weights only load failed",
    "nan_init": "holds NaN or infinite values",
    "wrong_encoder": "incompatible encoder",
    "wrong_optimizer_shape": "meta-optimizer exp_avg of",
    "infinite_optimizer_state": "meta-optimizer exp_avg_sq of",
    "other_optimizer": "not written by adam",
    "forged_types": "lacks the fields of a leap-ray checkpoint",
}
# evaluate checks a checkpoint's meta-state against its own encoder first (this one's
# hand-written optimizer state is empty); against the config's encoder: tests/test_evaluate.py
EVALUATE = {**CHECKPOINTS, "wrong_encoder": "meta-optimizer state does not fit"}


def tree(path: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in path.rglob("*")} if path.exists() else {}


def assert_one_line_error(result, expected: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "Traceback" not in output, output[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last, last


def test_corpus_is_complete():
    assert len(CONFIGS) >= 12
    for path in CONFIGS:
        assert path.read_text().startswith("# expect: "), path.name


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_bad_config_gives_its_error_and_writes_nothing(path, tmp_path, capsys, request):
    """Through `python -m leap_ray`, a fraction of a second each; through the CLI's own main
    in this process, which has them already, the cases refused only after the learner's
    imports (torch 2-4 s a process, RLlib 6 s) or a look at the cluster (a Ray start)."""
    expected = re.match(r"# expect: (.*)", path.read_text()).group(1)
    logdir = tmp_path / "runs"
    argv = ["train", "--config", str(path), "--logdir", str(logdir)]
    if path.stem == "impossible_resources":
        request.getfixturevalue("ray_session")  # the 2-CPU local Ray the session shares
    if path.stem.startswith("rllib_") or path.stem in IN_PROCESS:
        code = main(argv)
        out, err = capsys.readouterr()
        assert_one_line_error(subprocess.CompletedProcess(argv, code, out, err), expected)
    else:
        assert_one_line_error(run_cli(*argv), expected)
    assert not logdir.exists(), "a failed start must not write a run"
    assert not Path("/tmp/leap_ray_config_pwned").exists()


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_bad_checkpoint_gives_its_error_and_writes_nothing(name, tmp_path, capsys):
    """In-process (the CLI's own main; each refusal comes before Ray starts): the config corpus
    above has already shown that `python -m leap_ray` prints such an error as its last line."""
    run_dir = DATA / "bad_checkpoints" / name
    before = tree(run_dir)
    logdir = tmp_path / "runs"
    argv = ["train", "--config", "configs/smoke.yaml", "--resume", str(run_dir)]
    assert_refused(capsys, [*argv, "--logdir", str(logdir)], CHECKPOINTS[name])
    assert tree(run_dir) == before and not logdir.exists()
    assert not Path("/tmp/leap_ray_checkpoint_pwned").exists()


@pytest.mark.parametrize("name", sorted(EVALUATE))
def test_bad_checkpoint_is_refused_by_evaluate_as_init_and_baseline(name, tmp_path, capsys):
    """In-process (the CLI's own main): each refusal comes before Ray starts."""
    bad = str(DATA / "bad_checkpoints" / name)
    good = tmp_path / "good"
    cfg = load_config("configs/smoke.yaml")
    save_checkpoint(
        good, encoder_checkpoint(cfg, initial_encoder(cfg, training_games(cfg.env)), {}), 1
    )
    config = ["--config", "configs/smoke.yaml", "--out", str(tmp_path / "eval")]
    for args in (["--init", bad], ["--init", str(good), "--baseline", f"bad:{bad}"]):
        assert_refused(capsys, ["evaluate", *args, *config], EVALUATE[name])
    assert not (tmp_path / "eval").exists()


def test_train_task_rejects_bad_numbers():
    result = run_cli("train-task", "--game", "Pong", "--steps", "0")
    assert_one_line_error(result, "--steps: must be >= 1, got 0")


def test_nested_yaml_aliases_are_refused_fast_with_a_short_message():
    result = run_cli(
        "train", "--config", str(DATA / "bad_configs" / "billion_laughs.yaml"), timeout=30
    )
    assert_one_line_error(result, "meta.lr: must be float")
    assert len(result.stderr.strip().splitlines()[-1]) < 200


def test_logdir_naming_a_file_is_refused(tmp_path):
    a_file = tmp_path / "runs"
    a_file.write_text("not a directory")
    result = run_cli("train", "--config", "configs/smoke.yaml", "--logdir", str(a_file))
    assert_one_line_error(result, "is a file, not a directory")
    assert a_file.read_text() == "not a directory"


def test_evaluate_with_no_game_named_is_refused(tmp_path):
    result = run_cli("evaluate", "--init", str(tmp_path), "--games", ",", "--baseline", "random")
    assert_one_line_error(result, "--games: no game named in ','")


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--set", "logging.run_name=../../escape"],
            "logging.run_name: must be one path component",
        ),
        (["--set", f"logging.run_name={'r' * 300}"], "at most 100 letters"),
        (["--set", "logging.run_name=.hidden"], "not starting with '.' or '-'"),
        (["--logdir", "/proc/forbidden"], "logging.logdir: cannot write in '/proc/forbidden'"),
    ],
    ids=["escape", "too_long", "dot", "unwritable_logdir"],
)
def test_run_names_and_log_directories_are_checked_before_ray(tmp_path, capsys, args, expected):
    """A run name is one safe path component of bounded length, and the log directory must be
    creatable and writable: one line, exit 2, nothing written anywhere."""
    logdir = tmp_path / "runs"
    argv = ["train", "--config", "configs/smoke.yaml", "--logdir", str(logdir), *args]
    assert_refused(capsys, argv, expected)
    assert not logdir.exists() and list(tmp_path.iterdir()) == []


def test_the_log_directory_check_leaves_nothing_behind(tmp_path):
    from leap_ray.runs import check_logdir

    check_logdir(load_config("configs/smoke.yaml", [f"logging.logdir={tmp_path}/a/b/c"]))
    assert list(tmp_path.iterdir()) == []  # created to be checked, then removed


def test_train_task_seed_shares_the_config_fields_validation(capsys):
    assert main(["train-task", "--game", "Pong", "--steps", "10", "--seed", "-1"]) == 2
    assert "meta.seed: must be >= 0, got -1" in capsys.readouterr().err
    assert main(["train-task", "--config", "configs/smoke.yaml", "--set", "meta.seed=-1",
                 "--game", "Pong", "--steps", "10"]) == 2  # fmt: skip
    assert "meta.seed: must be >= 0, got -1" in capsys.readouterr().err


def test_runs_named_before_the_run_name_rule_still_load():
    """The rule applies where a run is named: a recorded config with an old name still loads
    (resume, evaluate, export), while naming a new run so is refused."""
    from leap_ray.config import ConfigError, config_from_dict
    from leap_ray.runs import check_run_name

    old = config_from_dict({"logging": {"run_name": "lr=0.01 run"}})
    with pytest.raises(ConfigError, match="logging.run_name: must be one path component"):
        check_run_name(old)
