"""Fault tolerance with real processes: a task worker killed mid-task, the driver killed mid-run,
a NaN partial; the ledger counts each task exactly once."""

import json
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

from leap_ray.checkpoint import init_digest, list_checkpoints, load_checkpoint
from leap_ray.config import load_config
from leap_ray.distributed.ledger import PartialMessage
from leap_ray.distributed.server import ParameterServer
from leap_ray.distributed.worker import TaskWorker
from leap_ray.driver import train
from leap_ray.meta import PartialMetaGradient
from tests.processes import (
    REPO,
    cmdline,
    descendants,
    end_tree,
    group_alive,
    listening_sockets,
    loopback,
    run_cli,
    start_cli,
    wait_for,
)

# tasks long enough (100 updates, several seconds on 2 cores) to be killed in the middle
LONG_TASKS = ["a2c.steps_per_task=2000", "meta.stream_every=10", "resources.max_attempts=3"]


def smoke_args(logdir, run_name, *overrides, tasks=LONG_TASKS):
    args = [
        "train",
        "--config",
        "configs/smoke.yaml",
        "--logdir",
        str(logdir),
        "--set",
        f"logging.run_name={run_name}",
    ]
    for override in [*tasks, *overrides]:
        args += ["--set", override]
    return args


@pytest.fixture(scope="module")
def reference_run(ray_session, tmp_path_factory):
    """An uninterrupted run of smoke.yaml's 2 meta_steps with the same seeds; it keeps
    checkpoints 1 and 2."""
    logdir = tmp_path_factory.mktemp("reference")
    cfg = load_config(
        "configs/smoke.yaml", [f"logging.logdir={logdir}", "logging.run_name=ref", *LONG_TASKS]
    )
    return train(cfg)


def uninterrupted_init(reference_run, meta_step):
    path = reference_run / "checkpoints" / f"checkpoint-{meta_step:06d}.pt"
    return load_checkpoint(path)["meta_init"]["init"]


def running_task_workers(root_pid):
    return [p for p in descendants(root_pid) if "TaskWorker.run_task" in cmdline(p)]


def kill_without_warning(proc) -> None:
    """SIGKILL the driver, its local Ray and anything below it that left its group."""
    end_tree(proc, timeout=30, signals=(signal.SIGKILL,))


def resume_to_the_end(run_dir, saved, log) -> dict:
    """`train --resume` the killed run to its end; it must say it resumed from `saved`.
    Returns the final checkpoint."""
    overrides = sum((["--set", o] for o in LONG_TASKS), [])
    proc = start_cli("train", "--config", "configs/smoke.yaml", "--resume", str(run_dir),
                     *overrides, log=log)  # fmt: skip
    try:
        assert proc.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        end_tree(proc)
    output = log.read_text()
    resumed = re.search(r"resumed at meta_step (\d+) \(init version (\d+), sha256 (\w+)\)", output)
    assert resumed, output[-2000:]
    assert int(resumed.group(1)) == saved["meta_step"]
    assert resumed.group(3) == init_digest(saved["meta_init"]["init"])
    return load_checkpoint(run_dir)


def assert_the_uninterrupted_init(reference_run, checkpoint) -> None:
    assert checkpoint["meta_step"] == 2
    for name, tensor in uninterrupted_init(reference_run, 2).items():
        assert torch.equal(checkpoint["meta_init"]["init"][name], tensor), name


@pytest.mark.usefixtures("ray_session")
def test_a_killed_worker_then_a_killed_driver_change_nothing(reference_run, tmp_path):
    """A task worker SIGKILLed mid-task: its task runs again and counts once. Then the driver
    and its local Ray SIGKILLed after meta_step 1: the resumed run ends exactly where the
    uninterrupted one does."""
    log = tmp_path / "first.log"
    proc = start_cli(*smoke_args(tmp_path, "crash"), log=log)  # smoke.yaml: 2 meta_steps
    try:
        wait_for(lambda: running_task_workers(proc.pid), 120, "a running task worker")
        time.sleep(1.0)  # let it stream a partial or two, which the ledger must then discard
        workers = wait_for(lambda: running_task_workers(proc.pid), 30, "a running task worker")
        os.kill(workers[0], signal.SIGKILL)
        wait_for(
            lambda: (
                "checkpoint-000001.pt" in [p.name for p in list_checkpoints(tmp_path / "crash")]
            ),
            240,
            "meta_step 1's checkpoint",
        )
        kill_without_warning(proc)
    finally:
        end_tree(proc)
    saved = load_checkpoint(tmp_path / "crash")
    assert saved["meta_step"] == 1, "killed after meta_step 1, before meta_step 2"
    assert [rec["attempt"] for _, rec in sorted(saved["ledger"].items())] in ([1, 0], [0, 1])
    final = resume_to_the_end(tmp_path / "crash", saved, tmp_path / "resume.log")
    ledger = final["ledger"]
    assert sorted(ledger) == [0, 1, 2, 3]
    assert all(rec["status"] == "applied" for rec in ledger.values())
    assert [rec["attempt"] for _, rec in sorted(ledger.items())][2:] == [0, 0]
    assert_the_uninterrupted_init(reference_run, final)


@pytest.mark.usefixtures("ray_session")
def test_a_driver_killed_before_its_first_meta_step_resumes_bit_identical(reference_run, tmp_path):
    """The run's initial checkpoint is what lets a run killed in its first meta_step resume."""
    log = tmp_path / "first.log"
    proc = start_cli(*smoke_args(tmp_path, "crash"), log=log)
    try:
        wait_for(lambda: list_checkpoints(tmp_path / "crash"), 180, "the initial checkpoint")
        kill_without_warning(proc)
    finally:
        end_tree(proc)
    saved = load_checkpoint(tmp_path / "crash")
    assert saved["meta_step"] == 0
    final = resume_to_the_end(tmp_path / "crash", saved, tmp_path / "resume.log")
    assert_the_uninterrupted_init(reference_run, final)


def assert_stopped_as_promised(proc, sig, log, run_dir) -> None:
    """Signal `proc`: exit 128 + signal with its local Ray ended, a checkpoint, and the line
    that says how to resume."""
    os.kill(proc.pid, sig)
    assert proc.wait(timeout=120) == 128 + sig, log.read_text()[-3000:]
    wait_for(lambda: not group_alive(proc.pid), 30, "the driver's local Ray to end")
    text = log.read_text()
    assert f"stopped by {signal.Signals(sig).name} at meta_step" in text, text[-3000:]
    assert f"continue with: python -m leap_ray train --resume {run_dir}" in text
    assert "Traceback" not in text
    assert list_checkpoints(run_dir)


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["ctrl-c", "to-a-background-job"])
def test_ctrl_c_checkpoints_and_says_how_to_resume(tmp_path, sigint_ignored):
    """SIGINT, also to a job a shell started in the background with SIGINT ignored; SIGTERM is
    `test_a_local_run_serves_nothing_without_the_token`'s end."""
    log = tmp_path / "cli.log"
    args = smoke_args(tmp_path, "stopped", "meta.meta_steps=50")
    proc = start_cli(*args, log=log, sigint_ignored=sigint_ignored)
    try:
        wait_for(lambda: running_task_workers(proc.pid), 120, "a running task")
        assert_stopped_as_promised(proc, signal.SIGINT, log, tmp_path / "stopped")
    finally:
        end_tree(proc)


def test_ray_init_leaves_a_commands_stop_handler_in_place():
    """connect wraps ray.init, which sets SIGTERM to its own sys.exit: a handler the command
    installed comes back (evaluate enters StopSignals before it starts Ray); Python's default
    gives way to Ray's."""
    from leap_ray.distributed.launch import _own_signal_handlers_kept

    def ours(signum, frame):
        pass

    def rays(signum, frame):
        pass

    before = signal.getsignal(signal.SIGTERM)
    try:
        for installed, kept in ((ours, ours), (signal.SIG_DFL, rays)):
            signal.signal(signal.SIGTERM, installed)
            with _own_signal_handlers_kept():
                signal.signal(signal.SIGTERM, rays)  # what ray.init does
            assert signal.getsignal(signal.SIGTERM) is kept
    finally:
        signal.signal(signal.SIGTERM, before)


def make_server(tmp_path, mode="sync"):
    init = {"w": np.ones((3, 2), dtype=np.float32), "b": np.zeros(2, dtype=np.float32)}
    cfg = {
        "meta": {"optimizer": "sgd", "lr": 1.0, "mode": mode, "max_partial_norm": 100.0},
        "logging": {"checkpoint_every": 1000},
        "env": {},
        "a2c": {},
        "resources": {},
    }
    from leap_ray.config import config_from_dict

    return ParameterServer(config_from_dict(cfg), init, str(tmp_path)), init


def message(task_id, value, attempt=0, chunk=0, final=True, version=0):
    grads = {"w": torch.full((3, 2), value), "b": torch.full((2,), value)}
    partial = PartialMetaGradient(grads, 1, int(final), version)
    return PartialMessage(task_id, attempt, chunk, final, partial.to_numpy())


def test_max_task_norm_bounds_each_tasks_meta_gradient(tmp_path):
    """meta.max_task_norm: a task's whole meta-gradient is scaled down to the bound before the
    meta-batch mean; a task within it is taken as it is."""
    from leap_ray.config import config_from_dict

    def change(bound, values):
        cfg = {"meta": {"optimizer": "sgd", "lr": 1.0, "max_task_norm": bound}}
        init = {"w": np.ones((3, 2), dtype=np.float32), "b": np.zeros(2, dtype=np.float32)}
        server = ParameterServer(config_from_dict(cfg), init, str(tmp_path))
        for task_id, value in enumerate(values):
            assert server.push(message(task_id, value))[0]
        stats = server.apply(list(range(len(values))), {})
        return stats["meta/init_change"], stats["meta/tasks_norm_bounded"]

    norm = float(np.sqrt(8))  # a message of value v has norm v * sqrt(8)
    assert change(0.0, [5.0]) == (pytest.approx(5 * norm), 0.0)
    assert change(1.0, [5.0]) == (pytest.approx(1.0), 1.0)
    # mean of a bounded task (norm 1) and one within the bound (norm 0.1 sqrt(8)), same direction
    assert change(1.0, [5.0, 0.1]) == (pytest.approx((1.0 + 0.1 * norm) / 2), 1.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e4])
def test_bad_partial_is_rejected_and_initialization_unchanged(tmp_path, bad):
    server, init = make_server(tmp_path)
    accepted, reason = server.push(message(0, bad))
    assert not accepted and ("NaN or Inf" in reason or "exceeds meta.max_partial_norm" in reason)
    stats = server.apply([0], {})
    assert stats["meta/tasks_rejected"] == 1 and server.meta_init.version == 0
    for name, value in init.items():
        assert torch.equal(server.meta_init.params[name].detach(), torch.from_numpy(value))
    assert stats["meta/rejected_partials"] == 1.0


def test_ledger_discards_dead_attempts_and_duplicates(tmp_path):
    server, init = make_server(tmp_path)
    assert server.push(message(0, 5.0, attempt=0, final=False))[0]  # the attempt that dies
    assert server.push(message(0, 1.0, attempt=1, chunk=0, final=False))[0]
    assert not server.push(message(0, 5.0, attempt=0, chunk=1))[0]  # late chunk of the dead one
    assert server.push(message(0, 1.0, attempt=1, chunk=0, final=False)) == (
        True,
        "duplicate chunk ignored",
    )
    assert server.push(message(0, 1.0, attempt=1, chunk=1, final=True))[0]
    assert server.push(message(1, 3.0))[0]
    server.apply([0, 1], {})
    # mean over 2 tasks of (1 + 1) and 3 -> 2.5; SGD lr 1
    torch.testing.assert_close(server.meta_init.params["w"].detach(), torch.full((3, 2), -1.5))
    assert not server.push(message(1, 3.0, attempt=2))[0], "an applied task must not count again"
    records = server.ledger.records()
    assert records[0]["attempt"] == 1 and records[0]["num_segments"] == 2


def test_async_mode_rejects_stale_partials(tmp_path):
    server, _ = make_server(tmp_path, mode="async")  # max_staleness 2
    server.push(message(0, 1.0))
    server.apply([0], {})
    server.push(message(1, 1.0))
    server.apply([1], {})
    server.push(message(2, 1.0, version=0))  # computed from version 0, now at version 2: ok
    server.push(message(3, 1.0, version=0))
    assert server.apply([2], {})["meta/staleness"] == 2.0
    stats = server.apply([3], {})  # now 3 versions old
    assert stats["meta/tasks_rejected"] == 1 and server.meta_init.version == 3


def test_a_meta_update_that_makes_the_initialization_non_finite_is_undone(tmp_path):
    """meta.lr = 1e38 with finite partials: the step overflows; nothing of it is kept."""
    server, init = make_server(tmp_path)
    server.meta_init.lr = 1e38
    for group in server.meta_init.optimizer.param_groups:
        group["lr"] = 1e38
    assert server.push(message(0, 10.0))[0]
    stats = server.apply([0], {})
    assert stats["meta/update_rejected"] == 1.0 and stats["meta/rejected_updates"] == 1.0
    assert server.meta_init.version == 0
    for name, value in server.meta_init.arrays().items():
        np.testing.assert_array_equal(value, init[name])
    assert server.push(message(1, 0.5))[0]  # a sane update afterwards goes through
    server.meta_init.optimizer.param_groups[0]["lr"] = 1.0
    assert server.apply([1], {})["meta/update_rejected"] == 0.0
    assert server.meta_init.version == 1


def test_a_non_finite_initialization_is_never_saved(tmp_path):
    from leap_ray.checkpoint import CheckpointError, encoder_checkpoint, save_checkpoint
    from leap_ray.config import config_from_dict

    init = {"w": np.array([1.0, float("nan")], dtype=np.float32)}
    state = encoder_checkpoint(config_from_dict({}), init, {})
    with pytest.raises(CheckpointError, match="refusing to save the initialization: w holds NaN"):
        save_checkpoint(tmp_path, state, keep=1)
    assert not (tmp_path / "checkpoints").exists()


def test_a_diverging_learner_is_named_not_retried_and_the_run_fails(tmp_path):
    result = run_cli(
        "train",
        "--config",
        "configs/smoke.yaml",
        "--set",
        "a2c.lr=1e6",
        "--set",
        "logging.run_name=diverged",
        "--logdir",
        str(tmp_path),
        timeout=180,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "no meta-update was applied in 2 meta_steps: all 4 tasks diverged" in last, last
    assert "lower a2c.lr" in last, last  # the final line names the cause and the fix
    assert "diverged: its policy is not finite at env_step" in result.stdout + result.stderr
    # an expected error of the project's own type is one line in a worker's log too
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "diverged" / "tasks.jsonl").open()]
    assert sorted(r["task_id"] for r in rows) == [0, 1, 2, 3]  # each once: no retry
    assert all(r["attempt"] == 0 and "lower a2c.lr" in r["failed"] for r in rows)
    assert json.loads((tmp_path / "diverged" / "meta.json").read_text())["success"] is False


# -- resume: what may change, which checkpoint, one writer -----------------------------------
@pytest.fixture
def saved_smoke_run(tmp_path):
    """A smoke run directory holding checkpoints of meta_steps 1 and 2 (hand-made, no Ray)."""
    from leap_ray.checkpoint import encoder_checkpoint, save_checkpoint
    from leap_ray.learners import initial_encoder

    cfg = load_config("configs/smoke.yaml")
    init = initial_encoder(cfg, ("Pong", "MsPacman"))
    run_dir = tmp_path / "run"
    for step in (1, 2):
        state = encoder_checkpoint(cfg, init, {"next_task_id": 2 * step, "env_steps": 0})
        state["meta_step"] = step
        save_checkpoint(run_dir, state, keep=3)
    return run_dir


def test_resume_refuses_settings_that_define_the_run_and_names_them(saved_smoke_run):
    from leap_ray.config import ConfigError
    from leap_ray.driver import prepare

    changed = load_config("configs/smoke.yaml", ["a2c.lr=0.5", "env.games=[Pong, Qbert]"])
    with pytest.raises(ConfigError) as refused:
        prepare(changed, str(saved_smoke_run))
    message = str(refused.value)
    assert "a2c.lr (run: 0.0001, now: 0.5)" in message and "env.games" in message
    assert "cannot change on resume" in message and "\n" not in message
    other_optimizer = load_config("configs/smoke.yaml", ["meta.optimizer=sgd"])
    with pytest.raises(ConfigError, match="meta.optimizer \\(run: 'adam', now: 'sgd'\\)"):
        prepare(other_optimizer, str(saved_smoke_run))
    longer = load_config(
        "configs/smoke.yaml", ["meta.meta_steps=9", "meta.lr=0.5", "logging.log_every=7"]
    )
    run_dir, _, _, checkpoint = prepare(longer, str(saved_smoke_run))
    assert run_dir == saved_smoke_run and checkpoint["meta_step"] == 2


def test_resumed_meta_lr_is_applied_to_the_restored_optimizer():
    from leap_ray.meta import MetaInitialization

    init = {"w": np.ones(3, dtype=np.float32)}
    first = MetaInitialization(init, "adam", 0.01)
    first.params["w"].grad = torch.ones(3)
    first.optimizer.step()
    resumed = MetaInitialization(init, "adam", 0.5)
    resumed.load_state_dict(first.state_dict())
    assert resumed.optimizer.param_groups[0]["lr"] == 0.5
    assert int(resumed.optimizer.state_dict()["state"][0]["step"]) == 1


def test_resume_from_an_older_checkpoint_is_refused_and_nothing_is_touched(saved_smoke_run):
    from leap_ray.config import ConfigError
    from leap_ray.driver import prepare

    folder = saved_smoke_run / "checkpoints"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    older = folder / "checkpoint-000001.pt"
    with pytest.raises(ConfigError, match="newer checkpoint \\(checkpoint-000002.pt\\)"):
        prepare(load_config("configs/smoke.yaml"), str(older))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    newest = folder / "checkpoint-000002.pt"
    assert prepare(load_config("configs/smoke.yaml"), str(newest))[3]["meta_step"] == 2


def test_a_run_directory_has_one_writer(saved_smoke_run, tmp_path):
    from leap_ray.config import ConfigError
    from leap_ray.runs import RunLock

    with RunLock(saved_smoke_run):
        with pytest.raises(ConfigError, match=f"is in use by pid {os.getpid()} on"):
            RunLock(saved_smoke_run).__enter__()
        with pytest.raises(ConfigError, match="is in use by pid"):
            train(load_config("configs/smoke.yaml"), resume=str(saved_smoke_run))
    with RunLock(saved_smoke_run):  # released on exit
        pass
    # a holder killed without a chance to clean up leaves its file; the kernel freed its lock
    import subprocess
    import sys

    code = "import sys; from leap_ray.runs import RunLock; RunLock(sys.argv[1]).__enter__()"
    subprocess.run([sys.executable, "-c", code, str(saved_smoke_run)], check=True, cwd=REPO)
    assert json.loads((saved_smoke_run / "lock").read_text())["pid"] != os.getpid()
    with RunLock(saved_smoke_run):
        assert json.loads((saved_smoke_run / "lock").read_text())["pid"] == os.getpid()


def _task_ids(run_dir) -> list[int]:
    return [json.loads(line)["task_id"] for line in (run_dir / "tasks.jsonl").open()]


def test_server_death_is_one_line_with_the_resume_command(tmp_path):
    log = tmp_path / "cli.log"
    proc = start_cli(*smoke_args(tmp_path, "lost", "meta.meta_steps=1", tasks=()), log=log)
    try:
        wait_for(lambda: running_task_workers(proc.pid), 120, "a running task")
        server = next(p for p in descendants(proc.pid) if "ParameterServer" in cmdline(p))
        os.kill(server, signal.SIGKILL)
        assert proc.wait(timeout=120) == 2, log.read_text()[-3000:]
    finally:
        end_tree(proc)
    text = log.read_text()
    last = [line for line in text.splitlines() if line.strip()][-1]
    assert last.startswith("error: the parameter server died"), last
    assert f"continue with: python -m leap_ray train --resume {tmp_path / 'lost'}" in last
    assert "Traceback" not in text
    assert "died; re-running it" not in text, "the task workers did not die: the server did"
    resumed = run_cli("train", "--resume", str(tmp_path / "lost"), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ids = _task_ids(tmp_path / "lost")
    assert sorted(ids) == [0, 1], ids  # one line per task outcome, re-runs included


def test_async_resume_runs_again_the_tasks_it_had_not_applied(tmp_path):
    """Stopped (SIGTERM) with tasks made but not applied: the resumed run runs each of them
    again and applies it once."""
    args = smoke_args(tmp_path, "async", "meta.mode=async", "meta.async_k=1", "meta.meta_steps=3")
    log = tmp_path / "cli.log"
    proc = start_cli(*args, log=log)
    try:
        wait_for(
            lambda: (
                "checkpoint-000001.pt" in [p.name for p in list_checkpoints(tmp_path / "async")]
            ),
            180,
            "meta_step 1",
        )
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    finally:
        end_tree(proc)
    saved = load_checkpoint(tmp_path / "async")
    assert saved["kind"] == "meta_training"
    pending = [spec["task_id"] for spec in saved["progress"]["pending"]]
    assert pending, saved["progress"]  # two workers, one task applied per meta_step
    assert all(saved["ledger"].get(t, {}).get("status") != "applied" for t in pending)
    resumed = run_cli("train", "--resume", str(tmp_path / "async"), timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ledger = load_checkpoint(tmp_path / "async")["ledger"]
    applied = [t for t, rec in ledger.items() if rec["status"] == "applied"]
    assert len(applied) == 3 and set(pending) <= set(ledger), (pending, ledger)
    assert all(ledger[t]["status"] == "applied" for t in pending if t in applied), ledger
    ids = _task_ids(tmp_path / "async")
    assert len(ids) == len(set(ids)), ids


FULL_DISK = """
import resource, sys
import numpy as np
from leap_ray.checkpoint import CheckpointError, save_checkpoint
from leap_ray.config import config_from_dict
from leap_ray.checkpoint import encoder_checkpoint

run_dir = sys.argv[1]
resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))  # no file may exceed 400 kB
small = encoder_checkpoint(config_from_dict({}), {"w": np.ones(1000, np.float32)}, {})
save_checkpoint(run_dir, small, keep=3)
big = encoder_checkpoint(config_from_dict({}), {"w": np.ones(200_000, np.float32)}, {})
big["meta_step"] = 1
try:
    save_checkpoint(run_dir, big, keep=3)
except CheckpointError as error:
    print(error)
"""


def test_a_full_disk_leaves_the_previous_checkpoint_and_no_litter(tmp_path):
    """The write fails part way (a file-size limit stands in for a full disk: both are an
    OSError from write): one error, the previous checkpoint intact, no temporary file."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    message = done.stdout.strip()
    assert message.startswith("could not write checkpoint") and "checkpoint-000001.pt" in message
    assert "the previous checkpoints are intact" in message and "\n" not in message
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["checkpoint-000000.pt"]
    assert load_checkpoint(tmp_path)["meta_step"] == 0


def test_a_local_run_serves_nothing_without_the_token(tmp_path):
    """Exposure (docs/faults.md, M): every listening socket of a local run is on loopback, and
    none answers a plain HTTP request but the Prometheus exporters of Ray's dashboard head and
    autoscaler monitor (fixed ports 44227 and 44217, no switch in Ray 2.60; on 0.0.0.0 before
    the run was held to loopback); the rest are Ray's gRPC servers, which need the session's
    token. Then SIGTERM stops it as ctrl-c does."""
    import http.client
    import urllib.error
    import urllib.request

    log = tmp_path / "cli.log"
    proc = start_cli(*smoke_args(tmp_path, "ports", "meta.meta_steps=50"), log=log)
    try:
        wait_for(lambda: running_task_workers(proc.pid), 120, "a running task")
        sockets = listening_sockets(descendants(proc.pid) | {proc.pid})
        assert sockets, "found no listening socket of the run"
        # the CLI's local Ray binds every server to loopback (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER)
        exposed = [(a, port, cmdline(pid)[:40]) for a, port, pid in sockets if not loopback(a)]
        assert not exposed, exposed
        answered = []
        for address, port, pid in sockets:
            host = (
                "127.0.0.1"
                if address in ("0.0.0.0", "0000:0000:0000:0000:0000:0000:0000:0000")
                else address
            )
            try:
                with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=3) as reply:
                    script = [a for a in cmdline(pid).split() if a.endswith(".py")]
                    answered.append((address, port, (script or ["?"])[0], reply.status))
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
                pass  # refused, 401, or not HTTP at all (gRPC)
        exporters = ("ray/dashboard/dashboard.py", "ray/autoscaler/_private/monitor.py")
        unknown = [entry for entry in answered if not entry[2].endswith(exporters)]
        assert not unknown, unknown
        assert_stopped_as_promised(proc, signal.SIGTERM, log, tmp_path / "ports")
    finally:
        end_tree(proc)


class FlakyWorker(TaskWorker):
    """A task worker whose first attempt at task 1 raises (a transient failure: a lost
    environment, a full /tmp), as a real worker's task can."""

    def run_task(self, spec, init):
        if spec.task_id == 1 and spec.attempt == 0:
            raise OSError("flaky: the environment went away")
        return super().run_task(spec, init)


@pytest.mark.usefixtures("ray_session")
def test_a_task_that_raises_is_re_run_and_counted_once(smoke_config, monkeypatch):
    import leap_ray.driver

    def make_flaky_worker(cfg, server, sink):
        res = cfg.resources
        actor = ray.remote(num_cpus=res.cpus_per_worker, max_restarts=0)(FlakyWorker)
        return actor.remote(cfg, server, sink)

    monkeypatch.setattr(leap_ray.driver, "make_worker", make_flaky_worker)
    run_dir = train(smoke_config("logging.run_name=flaky"))
    ledger = load_checkpoint(run_dir)["ledger"]
    assert {t: (rec["attempt"], rec["status"]) for t, rec in ledger.items()} == {
        0: (0, "applied"),
        1: (1, "applied"),
        2: (0, "applied"),
        3: (0, "applied"),
    }
    rows = [json.loads(line) for line in (run_dir / "tasks.jsonl").open()]
    assert sorted((r["task_id"], r["attempt"]) for r in rows) == [(0, 0), (1, 1), (2, 0), (3, 0)]


@ray.remote(num_cpus=0)
class DeadServer:
    def push(self, message) -> tuple[bool, str]:
        return True, ""


@pytest.mark.usefixtures("ray_session")
def test_a_task_stops_at_its_next_chunk_once_the_server_is_gone(smoke_config, monkeypatch):
    """A worker streaming to a dead server stops at the chunk after the failed one arrives,
    not after all its updates: of the task's 100 chunks only the first few are made."""
    import leap_ray.distributed.worker as worker_module
    from leap_ray.distributed.launch import make_sink
    from leap_ray.learners import initial_encoder
    from leap_ray.suites import training_games
    from leap_ray.tasks import TaskSpec

    made = []
    learner_for = worker_module.learner_for

    class CountingLearner:
        def __init__(self, cfg):
            self.learner = learner_for(cfg)

        def run_meta_task(self, cfg, spec, init, on_partial, on_log):
            def counted(partial):
                made.append(partial)
                on_partial(partial)

            return self.learner.run_meta_task(cfg, spec, init, counted, on_log)

    monkeypatch.setattr(worker_module, "learner_for", CountingLearner)
    cfg = smoke_config("a2c.steps_per_task=2000", "meta.stream_every=1")  # 100 chunks
    server = DeadServer.remote()
    ray.kill(server, no_restart=True)
    worker = TaskWorker(cfg, server, make_sink())  # in this process: the task runs here
    init = initial_encoder(cfg, training_games(cfg.env))
    with pytest.raises(ray.exceptions.RayActorError):
        worker.run_task(TaskSpec(0, 0, "Pong", 1, cfg.a2c.steps_per_task, 0), init)
    assert 2 <= len(made) < 10, len(made)
