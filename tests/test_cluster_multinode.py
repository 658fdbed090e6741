"""A real two-node Ray cluster on this machine, with token authentication, running the smoke
configuration submitted through the `ray job submit` CLI (Ray Jobs, as cluster/README.md says).

Both nodes are `ray start --block` children of this test, each in its own session and with its
own `--temp-dir`, on a loopback address and free ports only, so the test never touches another
Ray on the machine; it ends them by process group. Every child gets RAY_AUTH_MODE=token and a fresh
random token (and no other RAY_* variable from the environment, RAY_ADDRESS included): the head
and the `ray job` client get it as RAY_AUTH_TOKEN, the second node as a file named by
RAY_AUTH_TOKEN_PATH (as on a real cluster); the head enables token auth, and the job's driver
and workers inherit mode and token from their raylet. Each node offers one CPU, so the two
one-CPU task workers of the smoke run must land on different nodes; the parameter server asks
for `leap_server`, which only the head has.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.events import scalar_counts
from tests.processes import descendants, end_tree, group_alive, processes

REPO = Path(__file__).resolve().parent.parent
# A loopback address, but not 127.0.0.1: `ray start` replaces 127.0.0.1 and localhost with the
# machine's outward address (ray._private.services.resolve_ip_for_localhost), so the nodes would
# advertise, and talk to each other over, e.g. 192.168.x.y. Other 127/8 addresses are kept.
NODE_IP = "127.0.0.2"
BIN = Path(sys.executable).parent  # the venv: `ray`, and `python` for the job's entrypoint
TEST_BUDGET_S = 480  # the whole test: cluster start, the job, shutdown
JOB_TIMEOUT_S = 240
EXCLUDES = [".venv", ".git", "runs", "*.pt", ".pytest_cache", ".ruff_cache", "__pycache__"]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class Budget:
    """The test's own timeout (no pytest-timeout here): every wait draws on one deadline."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self, cap: float) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the test ran past its {TEST_BUDGET_S} s budget")
        return min(left, cap)

    def wait_for(self, predicate, cap: float, what: str, interval: float = 1.0, detail=str):
        """The first truthy predicate(); `detail()` goes into the timeout message."""
        deadline = time.monotonic() + self.left(cap)
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"timed out after {cap} s waiting for {what}\n{detail()}")


def free_ports(count: int) -> list[int]:
    """Distinct ports the OS has just handed out on 127.0.0.1 (held open together)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def child_env(token: str, metric_ports: list[int]) -> dict[str, str]:
    """No RAY_* from our environment (RAY_ADDRESS, another token); the cluster's token; free
    ports for the head's two Prometheus endpoints, which otherwise take fixed ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        AUTOSCALER_METRIC_PORT=str(metric_ports[0]),
        DASHBOARD_METRIC_PORT=str(metric_ports[1]),
        RAY_USAGE_STATS_ENABLED="0",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
    )
    return env


def start_node(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(BIN / "ray"), "start", "--block", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def alive(pids: set[int]) -> list[int]:
    table = processes()
    return sorted(pid for pid in pids if pid in table and table[pid][0] != "Z")


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


class Dashboard:
    """The head's dashboard HTTP API (the Jobs API and the state API), with the token."""

    def __init__(self, port: int, token: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.token = token

    def get(self, path: str, token: str | None = "<ours>") -> tuple[int, dict | str]:
        request = urllib.request.Request(self.url + path)
        if token is not None:
            token = self.token if token == "<ours>" else token
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")
        try:
            return status, json.loads(body)
        except json.JSONDecodeError:
            return status, body

    def up(self) -> bool:
        """The dashboard answers and its Jobs API is loaded."""
        try:
            return self.get("/api/jobs/")[0] == 200
        except OSError:
            return False

    def alive_nodes(self) -> list[dict]:
        try:
            status, body = self.get("/api/v0/nodes?limit=100")
        except OSError:
            return []
        if status != 200 or not isinstance(body, dict):
            return []
        nodes = body["data"]["result"]["result"]
        return [n for n in nodes if n["state"] == "ALIVE"]

    def job_status(self, submission_id: str) -> str:
        status, body = self.get(f"/api/jobs/{submission_id}")
        return body["status"] if status == 200 and isinstance(body, dict) else ""


def ray_cli(*args: str, env: dict, budget: Budget, cap: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ray"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=budget.left(cap),
    )


def test_smoke_job_on_a_two_node_cluster_with_token_auth(tmp_path):
    budget = Budget(TEST_BUDGET_S)
    # Unix socket paths under --temp-dir must stay below 108 characters.
    short = Path(tempfile.mkdtemp(prefix="lr")) if len(str(tmp_path)) > 24 else tmp_path
    token = secrets.token_hex(32)
    gcs, dash, client, agent_head, agent_second, *metric_ports = free_ports(7)
    env = child_env(token, metric_ports)
    dashboard = Dashboard(dash, token)
    common = [
        f"--node-ip-address={NODE_IP}",
        "--num-cpus=1",
        "--num-gpus=0",
        "--object-store-memory=100000000",
        "--min-worker-port=0",  # workers bind OS-chosen ports, not 10002-19999
        "--max-worker-port=0",
        "--disable-usage-stats",
    ]
    head_log, second_log = tmp_path / "head.log", tmp_path / "second.log"
    nodes: list[subprocess.Popen] = []
    try:
        nodes.append(
            start_node(
                [
                    "--head",
                    f"--port={gcs}",
                    "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={dash}",
                    f"--ray-client-server-port={client}",
                    f"--dashboard-agent-listen-port={agent_head}",
                    """--resources={"leap_server": 1}""",
                    f"--temp-dir={short / 'head'}",
                    *common,
                ],
                env,
                head_log,
            )
        )
        budget.wait_for(
            lambda: dashboard.up() or nodes[0].poll() is not None,
            120,
            "the head's dashboard",
            detail=lambda: tail(head_log),
        )
        assert nodes[0].poll() is None, f"head exited:\n{tail(head_log)}"

        # Token auth is on, with our token (not ~/.ray/auth_token): no token 401, another 403.
        assert dashboard.get("/api/jobs/", token=None)[0] == 401
        assert dashboard.get("/api/jobs/", token=secrets.token_hex(32))[0] == 403

        token_file = short / "auth_token"
        token_file.write_text(token)
        token_file.chmod(0o600)
        second_env = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
        second_env["RAY_AUTH_TOKEN_PATH"] = str(token_file)
        nodes.append(
            start_node(
                [
                    f"--address={NODE_IP}:{gcs}",
                    f"--dashboard-agent-listen-port={agent_second}",
                    """--resources={"second_node": 1}""",
                    f"--temp-dir={short / 'second'}",
                    *common,
                ],
                second_env,
                second_log,
            )
        )
        up_nodes = budget.wait_for(
            lambda: len(found := dashboard.alive_nodes()) == 2 and found,
            120,
            "two alive nodes",
            detail=lambda: tail(head_log) + tail(second_log),
        )
        assert all(p.poll() is None for p in nodes), tail(head_log) + tail(second_log)
        by_resource = {
            name: [n["node_id"] for n in up_nodes if name in n["resources_total"]]
            for name in ("leap_server", "second_node")
        }
        assert len(by_resource["leap_server"]) == len(by_resource["second_node"]) == 1, up_nodes
        assert {n["node_ip"] for n in up_nodes} == {NODE_IP}, up_nodes
        head_id, second_id = by_resource["leap_server"][0], by_resource["second_node"][0]
        assert [n["node_id"] for n in up_nodes if n["is_head_node"]] == [head_id], up_nodes

        # Submit with the real CLI: upload the checkout, run the smoke config on the cluster.
        logdir = tmp_path / "runs"
        submission_id = f"smoke-{secrets.token_hex(4)}"
        submitted = ray_cli(
            "job", "submit",
            "--address", dashboard.url,
            "--working-dir", str(REPO),
            "--runtime-env-json", json.dumps({"excludes": EXCLUDES}),
            "--submission-id", submission_id,
            "--no-wait",
            "--",
            "python", "-m", "leap_ray", "train", "--config", "configs/smoke.yaml",
            "--logdir", str(logdir),
            "--set", "logging.run_name=cluster",
            "--set", "resources.server_resource=leap_server",
            env=env, budget=budget,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        assert submission_id in submitted.stdout + submitted.stderr

        status = budget.wait_for(
            lambda: (s := dashboard.job_status(submission_id)) in TERMINAL and s,
            JOB_TIMEOUT_S,
            f"job {submission_id} to finish",
            interval=2.0,
        )
        logs = ray_cli("job", "logs", submission_id, "--address", dashboard.url,
                       env=env, budget=budget)  # fmt: skip
        assert logs.returncode == 0, logs.stderr
        assert status == "SUCCEEDED", f"{status}\n{logs.stdout[-4000:]}"
        cli_status = ray_cli("job", "status", submission_id, "--address", dashboard.url,
                             env=env, budget=budget)  # fmt: skip
        assert f"'{submission_id}' succeeded" in cli_status.stdout, cli_status.stdout
        assert "done: 2 meta_steps" in logs.stdout, logs.stdout[-4000:]

        run_dir = logdir / "cluster"
        rows = [json.loads(line) for line in (run_dir / "tasks.jsonl").read_text().splitlines()]
        assert len(rows) >= 4, rows  # meta_batch_size 2 x meta_steps 2
        assert {r["node_id"] for r in rows} == {head_id, second_id}, rows
        assert {r["node_ip"] for r in rows} == {NODE_IP}, rows
        assert len({(r["node_id"], r["pid"]) for r in rows}) == 2, rows  # one worker per node
        assert sorted(run_dir.glob("checkpoints/checkpoint-*.pt")), list(run_dir.rglob("*"))
        assert sorted(run_dir.glob("events.out.tfevents.*")), list(run_dir.rglob("*"))
        tags = {tag for tag, _ in scalar_counts(run_dir)}
        for row in (r for r in rows if r["node_id"] == second_id):  # telemetry crossed nodes
            assert f"task/{row['task_id']:05d}-{row['game']}/losses/total" in tags, row
        assert json.loads((run_dir / "meta.json").read_text())["success"] is True
    finally:
        started = {pid for proc in nodes for pid in descendants(proc.pid)}
        for proc in reversed(nodes):
            end_tree(proc, timeout=30)
        left = alive(started) + [pid for proc in nodes for pid in group_alive(proc.pid)]
        for pid in left:  # only what our nodes started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if short != tmp_path:  # the nodes' --temp-dir: session logs, sockets, spilled objects
            shutil.rmtree(short, ignore_errors=True)
    assert all(proc.poll() is not None for proc in nodes)
    assert not left, f"processes left behind after SIGTERM/SIGKILL of the nodes: {left}"
