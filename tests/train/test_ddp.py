"""DDP on two CPU processes (gloo): gradients reach the parametrized weights, replicas stay identical."""

import json
import os
import shutil
import socket
import subprocess

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from lipsurrogate.nn import LipschitzMLP, load_model
from lipsurrogate.nn.serialization import _effective_state

NORMS = ("l1-column", "spectral")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _factory(norm):
    def factory(stream):
        lo, hi = stream.input_ranges()
        return LipschitzMLP(stream.in_features, 1, [16, 16], lipschitz=4.0, norm=norm, input_offset=(lo + hi) / 2,
                            input_scale=2 / (hi - lo), seed=0)

    return factory


def _worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    from lipsurrogate.train.distributed import train_ddp

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        report = {}
        for norm in NORMS:
            result = train_ddp(_factory(norm), data, steps=15, batch_size=32, buffer_points=400, read_samples=1,
                               seed=0, out=os.path.join(out, f"model-{norm}"), progress=False, lr=1e-2)
            grads = [m.parametrizations.weight.original.grad for m in result.model.modules()
                     if hasattr(m, "parametrizations")]
            report[norm] = {
                "difference": result.replica_max_abs_difference,
                "grads": len(grads) > 0 and all(g is not None and float(g.abs().sum()) > 0 for g in grads),
                "losses": result.history.losses,
            }
            save_file({k: v.contiguous() for k, v in _effective_state(result.model).items()},
                      os.path.join(out, f"rank{rank}-{norm}.safetensors"))
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(report, f)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # imported here: the spawned ranks import this module, and need neither py-pde nor numba
    from lipsurrogate.data.dataset import save_dataset
    from lipsurrogate.data.generators import heat2d

    ds = heat2d(grid=8, frames=3, t_end=0.1, samples=8, seed=0, backend="numpy", diffusivity_range=(0.05, 0.1),
                same_initial_condition=True, progress=False)
    return save_dataset(ds, tmp_path_factory.mktemp("ddp") / "sweep.nc")


def test_two_gloo_ranks_train_identical_replicas(data, tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(tmp_path)), nprocs=2, join=True)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for norm in NORMS:
        states = [load_file(tmp_path / f"rank{r}-{norm}.safetensors") for r in range(2)]
        assert states[0].keys() == states[1].keys()
        for key in states[0]:
            assert torch.equal(states[0][key], states[1][key]), key
        for report in reports:
            assert report[norm]["difference"] == 0.0
            assert report[norm]["grads"], "no gradient reached parametrizations.weight.original"
        # the ranks streamed different shards, so their mini-batch losses differ
        assert reports[0][norm]["losses"] != reports[1][norm]["losses"]
        saved = load_model(tmp_path / f"model-{norm}")
        x = torch.rand(64, 4, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            plain = LipschitzMLP(4, 1, [16, 16], lipschitz=4.0, norm=norm, seed=0)
            assert not torch.allclose(saved(x), plain(x))  # training changed the weights
        for key, value in _effective_state(saved).items():
            torch.testing.assert_close(value, states[0][key], rtol=0, atol=0)


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")
def test_torchrun_entry_point(data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [shutil.which("torchrun"), "--nproc_per_node", "2", "--master_port", str(_free_port()), "-m",
           "lipsurrogate.train.distributed", "--data", str(data), "--out", str(tmp_path / "model"), "--steps", "10",
           "--batch-size", "32", "--buffer-points", "400", "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["replica_max_abs_difference"] == 0.0
    assert load_model(tmp_path / "model").in_features == 4
    assert (tmp_path / "model.training.json").is_file()
