"""One real local Ray per test session (2 CPUs), shut down at the end."""

import pytest
import ray

from leap_ray.config import load_config


@pytest.fixture(scope="session")
def ray_session():
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def smoke_config(tmp_path):
    """configs/smoke.yaml writing under a fresh temporary logdir."""

    def make(*overrides):
        return load_config("configs/smoke.yaml", [f"logging.logdir={tmp_path}", *overrides])

    return make
