"""The studies' diagnostic scripts under experiments/ on hand-made runs (real ALE probe frames)."""

import sys

from leap_ray.checkpoint import encoder_checkpoint, save_checkpoint
from leap_ray.config import load_config
from leap_ray.learners import initial_encoder
from leap_ray.suites import training_games
from tests.processes import REPO

sys.path.insert(0, str(REPO / "experiments"))
from preactivation_shift import main as preactivation_shift  # noqa: E402


def test_preactivation_shift_tells_a_coherent_push_from_a_random_one(tmp_path, capsys):
    """Every fc bias lowered by 1,000: each unit is pushed far down and dies; the control, as
    long a move of the bias in a random direction, raises some units and lowers others."""
    cfg = load_config("configs/smoke.yaml")
    theta_0 = initial_encoder(cfg, training_games(cfg.env))
    run = tmp_path / "run"
    lowered = {**theta_0, "fc.bias": theta_0["fc.bias"] - 1000.0}
    for step, init in enumerate((theta_0, lowered)):
        state = encoder_checkpoint(cfg, init, {})
        state["meta_step"] = step
        save_checkpoint(run, state, keep=5)
    table = tmp_path / "shift.md"
    assert preactivation_shift([str(run), "--every", "1", "--markdown", str(table)]) == 0
    rows = [line.split("|")[1:-1] for line in table.read_text().splitlines()[4:]]
    cells = {row[0].strip(): [c.strip() for c in row[1:]] for row in rows}
    assert cells["theta_0"][:2] == ["0.00", "0.0%"]
    assert cells["meta_step 1"][1:] == ["100.0%", "100.0%"]  # pushed down, dead
    pushed, dead = (float(c.rstrip("%")) for c in cells["its control"][1:])
    assert 20 < pushed < 80 and 20 < dead < 80, cells["its control"]
    assert preactivation_shift([str(tmp_path / "none")]) == 2
    assert "no checkpoint under" in capsys.readouterr().err
