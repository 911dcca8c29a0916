r"""Data-parallel training with standard PyTorch DDP, each rank streaming its own shard of a file.

Run with ``torchrun`` (one process per rank, CPU, gloo backend)::

    torchrun --nproc_per_node 2 -m lipsurrogate.train.distributed \
        --data family.nc --out model --steps 2000 --batch-size 512 --hidden 64,64

or call :func:`train_ddp` from your own script that ``torchrun`` starts. Every rank builds the
same model (seeded; DDP also broadcasts rank 0's weights and buffers), streams a disjoint shard
of the dataset file (:class:`~lipsurrogate.train.streaming.FieldStream` with ``rank`` and
``world_size``), and runs the usual :func:`~lipsurrogate.train.train` loop on the
``DistributedDataParallel`` wrapper: gradients are averaged across ranks at every backward
pass, so the effective batch is ``world_size * batch_size``. Rank 0 saves the model with
:func:`~lipsurrogate.nn.save_model`.

Note [weight parametrizations under DDP]
    The Lipschitz layers constrain weights with ``torch.nn.utils.parametrize``: the trained
    ``nn.Parameter`` is ``parametrizations.weight.original`` and the constrained weight is
    recomputed from it in every forward pass. DDP registers its all-reduce hooks on the
    parameters, i.e. on ``original``, so gradients are averaged before the constraint is
    applied again (the constraint is deterministic, so every rank gets the same weight).
    Power-iteration vectors of spectral norms are buffers, broadcast from rank 0 at each
    forward pass (``broadcast_buffers=True``). Projected weights (``enforce="project"``) are
    projected after every step on every rank, identically. :func:`train_ddp` checks at the end
    that all replicas hold identical tensors and reports the largest difference (exact).

Multi-node runs (``torchrun --nnodes N --node_rank R --rdzv_endpoint HOST:PORT``) are
described in ``theory/scaling.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .._io import write_json
from ..exceptions import ConfigurationError
from .loop import TrainingHistory
from .streaming import FieldStream, train_streaming

__all__ = ["DDPResult", "train_ddp", "replica_difference", "main"]


@dataclass
class DDPResult:
    """What :func:`train_ddp` returns on every rank.

    Attributes
    ----------
    model : nn.Module
        The trained model (unwrapped from DDP), in evaluation mode.
    history : TrainingHistory
        This rank's losses (each an estimate on this rank's mini-batch).
    rank, world_size : int
    replica_max_abs_difference : float
        **Exact**: the largest absolute difference between any parameter or buffer of any two
        replicas after training (0.0 when they are in sync).
    saved : tuple of Path or None
        The files rank 0 wrote (``None`` on other ranks or without ``out``).
    """

    model: nn.Module
    history: TrainingHistory
    rank: int
    world_size: int
    replica_max_abs_difference: float
    saved: tuple | None = None


def replica_difference(model: nn.Module) -> float:
    """Largest absolute difference of any parameter or buffer across the ranks (exact; collective)."""
    import torch.distributed as dist

    tensors = [t.detach().reshape(-1).to(torch.float64) for t in list(model.parameters()) + list(model.buffers())
               if t.is_floating_point()]
    flat = torch.cat(tensors) if tensors else torch.zeros(1, dtype=torch.float64)
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).max()) if flat.numel() else 0.0


def train_ddp(
    model_factory: Callable[[FieldStream], nn.Module],
    dataset_path: str | os.PathLike,
    *,
    variable: str = "u",
    inputs: Sequence[str] | None = None,
    loss="mse",
    steps: int = 1000,
    batch_size: int = 256,
    buffer_points: int = 2**18,
    read_samples: int | None = None,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    backend: str = "gloo",
    progress: bool = True,
    ddp_options: dict | None = None,
    **train_options,
) -> DDPResult:
    """Train ``model_factory(stream)`` with DDP on this process's shard of ``dataset_path``.

    Call it on every rank. Uses the default process group if one is initialised; otherwise
    initialises one from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT``) with ``backend`` and destroys it at the end.

    Parameters
    ----------
    model_factory : callable
        ``model_factory(stream) -> nn.Module``, called on every rank with torch's global generator
        seeded with ``seed`` (and restored afterwards); the stream gives ``in_features`` and
        ``input_ranges()``.
    dataset_path : path
        A dataset file (see :class:`~lipsurrogate.train.streaming.FieldStream`).
    variable, inputs, buffer_points, read_samples
        Passed to the stream.
    loss, steps, seed, **train_options
        Passed to :func:`~lipsurrogate.train.train`; every rank runs exactly ``steps`` steps.
    batch_size : int
        Points per rank and step.
    out : path, optional
        Rank 0 saves the model here (:func:`~lipsurrogate.nn.save_model`).
    backend : str
        ``"gloo"`` for CPUs (``"nccl"`` for GPUs).
    progress : bool
        Progress bar on rank 0.
    ddp_options : dict, optional
        Keyword arguments of ``DistributedDataParallel`` (e.g. ``find_unused_parameters``).

    Returns
    -------
    DDPResult
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from ..nn import save_model

    own_group = False
    if not dist.is_initialized():
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ConfigurationError(
                "train_ddp needs an initialised torch.distributed process group or torchrun's environment; "
                f"{missing} are not set. Start it with torchrun --nproc_per_node N ..."
            )
        dist.init_process_group(backend)
        own_group = True
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        stream = FieldStream(dataset_path, variable, inputs, batch_size=batch_size, buffer_points=buffer_points,
                             read_samples=read_samples, seed=seed, epochs=None, rank=rank, world_size=world)
        with torch.random.fork_rng():  # same initial weights on every rank; the caller's generator is left alone
            torch.manual_seed(int(seed))
            model = model_factory(stream)
        ddp = DistributedDataParallel(model, **(ddp_options or {}))
        history = train_streaming(ddp, stream, loss, steps=steps, seed=seed, progress=progress and rank == 0,
                                  **train_options)
        model = ddp.module.eval()
        difference = replica_difference(model)
        saved = save_model(model, out) if (out is not None and rank == 0) else None
        dist.barrier()
        # release DDP's reducer (it holds the process group and gloo work objects) before the
        # group is destroyed, not at some later garbage collection: a gloo object freed after the
        # group can abort the process ("terminate called without an active exception")
        del ddp
        return DDPResult(model, history, rank, world, difference, saved)
    finally:
        if own_group:
            dist.destroy_process_group()


# -- entry point for torchrun --------------------------------------------------------------------

def _default_factory(hidden: Sequence[int], lipschitz: float, norm: str, seed: int):
    def factory(stream: FieldStream) -> nn.Module:
        from ..nn import LipschitzMLP

        lo, hi = stream.input_ranges()
        span = [(b - a) if b > a else 1.0 for a, b in zip(lo, hi)]
        return LipschitzMLP(stream.in_features, 1, list(hidden), lipschitz=lipschitz, norm=norm,
                            input_offset=[(a + b) / 2 for a, b in zip(lo, hi)], input_scale=[2 / s for s in span],
                            seed=seed)

    return factory


def run_from_arguments(argv: Sequence[str] | None = None) -> dict | None:
    """Parse the arguments of ``torchrun ... -m lipsurrogate.train.distributed`` and train.

    Returns the JSON-ready summary on rank 0 (also written beside the model as
    ``<out>.training.json``) and None on the other ranks; :func:`lipsurrogate.cli.ddp_main`
    prints it.
    """
    parser = argparse.ArgumentParser(prog="python -m lipsurrogate.train.distributed",
                                     description="Data-parallel (DDP) training of a LipschitzMLP on a dataset file.")
    parser.add_argument("--data", required=True, type=Path, help="dataset file (.nc/.h5)")
    parser.add_argument("--out", required=True, type=Path, help="model path stem (rank 0 writes .safetensors/.json)")
    parser.add_argument("--variable", default="u")
    parser.add_argument("--inputs", default=None, help="comma-separated input columns (default: x,y,t[,diffusivity])")
    parser.add_argument("--hidden", default="64,64", help="hidden widths, comma-separated")
    parser.add_argument("--lipschitz", type=float, default=4.0)
    parser.add_argument("--norm", default="l1-column")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256, help="points per rank and step")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--buffer-points", type=int, default=2**18)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--backend", default="gloo")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    hidden = [int(h) for h in args.hidden.split(",") if h]
    result = train_ddp(
        _default_factory(hidden, args.lipschitz, args.norm, args.seed), args.data, variable=args.variable,
        inputs=None if args.inputs is None else args.inputs.split(","), steps=args.steps, batch_size=args.batch_size,
        lr=args.lr, buffer_points=args.buffer_points, seed=args.seed, out=args.out, backend=args.backend,
        progress=not args.no_progress,
    )
    if result.rank == 0:
        summary = {"world_size": result.world_size, "steps": args.steps, "batch_size_per_rank": args.batch_size,
                   "final_loss": result.history.losses[-1], "seconds": result.history.seconds,
                   "replica_max_abs_difference": result.replica_max_abs_difference,
                   "model": [str(p) for p in result.saved]}
        write_json(args.out.with_name(args.out.name + ".training.json"),
                   {**summary, "history": result.history.to_dict(), "arguments": {k: str(v) for k, v in vars(args).items()}})
        return summary
    return None


if __name__ == "__main__":  # torchrun -m lipsurrogate.train.distributed: the command-line side lives in cli.py
    from ..cli import ddp_main

    sys.exit(ddp_main())
