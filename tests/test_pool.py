"""The worker pool shared by meta-training and evaluation, on a real local Ray: results come
back, a worker that dies is replaced and its job comes back lost, a job that raises comes back
with its error on a reusable worker, and a pool that cannot start a worker says so."""

import os

import pytest
import ray

from leap_ray.distributed.pool import WorkerPool


@ray.remote(num_cpus=0.1, max_restarts=0)
class Doubler:
    def ready(self):
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def double(self, x):
        if x == "die":
            os._exit(1)
        if x == "raise":
            raise ValueError("a bad job")
        return 2 * x

    def ask(self, peer):
        """What a task worker does when it streams to the server."""
        return ray.get(peer.double.remote(0))


def drain(pool, jobs):
    """Runs `jobs` through the pool; returns {job: outcome}."""
    outcomes, queue = {}, list(jobs)
    while queue or pool.running:
        while pool.idle and queue:
            job = queue.pop(0)
            pool.run(job, lambda worker, x=job: worker.double.remote(x))
        for outcome in pool.wait(timeout=30):
            outcomes[outcome.job] = outcome
    return outcomes


def test_results_deaths_and_errors(ray_session):
    pool = WorkerPool(Doubler.remote, 2, needs="0.1 CPU")
    outcomes = drain(pool, [1, 2, "die", 3, "raise", 4])
    assert {job: o.result for job, o in outcomes.items() if isinstance(job, int)} == {
        1: 2,
        2: 4,
        3: 6,
        4: 8,
    }
    assert outcomes["die"].lost and outcomes["die"].error is None
    assert "a bad job" in str(outcomes["raise"].error) and not outcomes["raise"].lost
    # the dead worker was replaced: both workers take jobs again
    while pool.idle < 2:
        pool.wait(timeout=5)
    assert drain(pool, [5, 6])[6].result == 12
    assert len(pool.nodes) == 1


def test_a_job_whose_peer_died_is_an_error_on_a_live_worker(ray_session):
    """The call raised an ActorDiedError about another actor: the worker is not the one that
    died, so it is neither replaced nor its job called lost (the driver then asks whether the
    server is alive)."""
    peer = Doubler.remote()
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(peer.double.remote("die"))
    pool = WorkerPool(Doubler.remote, 1, needs="0.1 CPU")
    while pool.idle < 1:
        pool.wait(timeout=5)
    pool.run("ask", lambda worker: worker.ask.remote(peer))
    (outcome,) = pool.wait(timeout=30)
    assert not outcome.lost and isinstance(outcome.error, ray.exceptions.RayActorError)
    assert pool.idle == 1 and drain(pool, [7])[7].result == 14  # the same worker, reused


def test_a_pool_whose_workers_cannot_start_says_so(ray_session):
    unplaceable = Doubler.options(resources={"no_such_resource": 1}).remote
    pool = WorkerPool(unplaceable, 1, needs="1 no_such_resource", start_timeout_s=1.0)
    with pytest.raises(RuntimeError, match="no task worker started within 1 s.*no_such_resource"):
        for _ in range(5):
            pool.wait(timeout=1.0)
