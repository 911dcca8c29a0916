"""Thread counts from affinity, cgroup quotas, the environment and the load of other processes."""

import os

import pytest
import torch

from lipsurrogate._threads import (_cgroup_cpu_limit, available_cores, busy_cores, configure_threads,
                                   default_threads, threads_for_load, torch_threads)
from lipsurrogate.exceptions import ConfigurationError


def test_cgroup_quota_v2_v1_and_unlimited(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpu_limit(v2) == pytest.approx(1.5)
    (v2 / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpu_limit(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert _cgroup_cpu_limit(v1) == pytest.approx(3.0)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert _cgroup_cpu_limit(v1) is None
    assert _cgroup_cpu_limit(tmp_path / "missing") is None


def test_available_cores_is_within_the_affinity_mask():
    cores = available_cores()
    assert 1 <= cores <= len(os.sched_getaffinity(0))


def test_environment_wins_and_bad_values_are_refused():
    assert default_threads({"LIPSURROGATE_THREADS": "3", "OMP_NUM_THREADS": "7"}) == 3
    assert default_threads({"OMP_NUM_THREADS": "4,2"}) == 4
    assert default_threads({}) == available_cores()
    assert threads_for_load({"OMP_NUM_THREADS": "5"}, cores=2, busy=9) == 5  # asked for: honoured
    for bad in ("0", "-2", "two"):
        with pytest.raises(ConfigurationError, match="OMP_NUM_THREADS"):
            default_threads({"OMP_NUM_THREADS": bad})


def test_threads_follow_the_free_cores():
    assert threads_for_load({}, cores=2, busy=0) == 2
    assert threads_for_load({}, cores=2, busy=1) == 1
    assert threads_for_load({}, cores=2, busy=5) == 1  # never below one
    assert threads_for_load({}, cores=16, busy=3) == 13


def test_busy_cores_subtracts_this_process(tmp_path):
    loadavg = tmp_path / "loadavg"
    tasks = tmp_path / "task"
    for tid, state in [(10, "R"), (11, "S"), (12, "R")]:
        (tasks / str(tid)).mkdir(parents=True)
        (tasks / str(tid) / "stat").write_text(f"{tid} (python (x) y) {state} 1 2 3")  # names may hold ')' and spaces
    loadavg.write_text("0.50 0.40 0.30 5/300 12345\n")
    assert busy_cores(loadavg, tasks) == 3  # 5 runnable, 2 of them ours
    loadavg.write_text("0.50 0.40 0.30 1/300 12345\n")
    assert busy_cores(loadavg, tasks) == 0
    assert busy_cores(tmp_path / "absent", tasks) == 0  # no /proc: assume idle


def test_numpy_blas_threads_limit_and_restore():
    """configure_threads gives numpy's BLAS pool one thread; numpy_blas_threads limits it for a block
    and restores it (the certifier runs inside one)."""
    import threadpoolctl

    from lipsurrogate._threads import numpy_blas_threads
    from lipsurrogate.bounds import certify

    def blas():
        return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]

    if not blas():
        pytest.skip("numpy was built without a BLAS library that threadpoolctl sees")
    before = blas()
    limiter = threadpoolctl.threadpool_limits(limits=2, user_api="blas")
    try:
        with numpy_blas_threads(1):
            assert set(blas()) == {1}
        assert set(blas()) == {2}
        torch_before = torch.get_num_threads()
        configure_threads(torch_before)
        assert set(blas()) == {1}
        assert certify.__wrapped__ is not None  # the certifier's entry point runs with one BLAS thread
    finally:
        limiter.restore_original_limits()
        threadpoolctl.threadpool_limits(limits=max(before), user_api="blas")


def test_configure_and_scoped_threads_restore():
    before = torch.get_num_threads()
    try:
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        with torch_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
        with pytest.raises(ConfigurationError):
            configure_threads(0)
    finally:
        torch.set_num_threads(before)


def test_training_loop_restores_threads_and_checks_its_argument():
    from lipsurrogate.train import train

    model = torch.nn.Linear(2, 1)
    x, y = torch.randn(64, 2), torch.randn(64, 1)
    before = torch.get_num_threads()
    train(model, x, y, steps=3, batch_size=16, progress=False, threads=1)
    assert torch.get_num_threads() == before
    train(model, x, y, steps=3, batch_size=16, progress=False, threads="auto")
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigurationError, match="threads"):
        train(model, x, y, steps=3, progress=False, threads=0)
