"""Training-step throughput of Lipschitz layers against a plain MLP and peer libraries.

Every model maps 3 inputs through 4 hidden layers of width 128 to 1 output and is trained
with Adam on an MSE loss over one fixed random batch of 4096 points. One *step* is a forward
pass, a backward pass and an optimizer step (plus the projection for ``enforce="project"``).

Models
------
``plain MLP``
    ``nn.Sequential`` of ``nn.Linear`` + ``nn.ReLU``; the reference (ratio 1.0).
``lipsurrogate <norm>``
    :class:`lipsurrogate.nn.LipschitzMLP` with GroupSort (group size 2) for the norms
    ``"l1-column"`` (Eq. 2.8, the headline), ``"l1"``, ``"linf-row"`` and ``"spectral"``,
    and ``"l1-column"`` with ``enforce="project"`` (projection after every optimizer step via
    :func:`lipsurrogate.nn.project_weights_`). Two rows switch off one compiled training path each
    (the GroupSort pair step, and the norms' pass of :mod:`lipsurrogate.nn._fused_norms`), to show
    what it buys in the same run.
``deel-torchlip``
    ``torchlip.Sequential`` of ``torchlip.SpectralLinear`` (power iteration followed by
    Bjorck orthonormalisation, Bjorck on by default) with ``torchlip.GroupSort2``.
``monotonicnetworks``
    ``lmn.LipschitzLinear(kind="one")`` (per-column l1 normalisation, the same constraint as
    ``"l1-column"``) with ``lmn.GroupSort(n_groups=width // 2)``.

Method
------
All models are built first and warmed up (10 steps each). Timing then runs in interleaved
rounds: in every round each model runs ``steps`` steps in round-robin order (each round
starting at the next model), and the time per step of that round is recorded. The reported
figure is the median over rounds; the ratio is the median over rounds of the model's time over
the plain MLP's time in the same round, so that the host's drift between rounds cancels. Peer libraries are optional (the
``bench`` extra); a missing one gives a "not installed" row.

Every model runs with glibc's malloc thresholds of the ``lipsurrogate`` command
(:mod:`lipsurrogate._allocator`), which ``fit`` trains under; ``--default-malloc`` keeps glibc's
own. With those, each 2 MiB activation or gradient of a step is a fresh ``mmap`` whose pages the
kernel zeroes on first touch, which costs every model the same few hundred microseconds per
layer and hides the differences between them.

Usage
-----
::

    python benchmarks/bench_layers.py            # full run, writes benchmarks/results/layers.md
    python benchmarks/bench_layers.py --quick    # fewer rounds and steps
    python benchmarks/bench_layers.py --out PATH
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from _markdown import write
from torch import nn

import lipsurrogate
from lipsurrogate._allocator import tune_malloc
from lipsurrogate._compiled import flag_off
from lipsurrogate.nn import GroupSort, LipschitzMLP, _fused_norms, activations, project_weights_

IN_FEATURES = 3
OUT_FEATURES = 1
WIDTH = 128
DEPTH = 4
BATCH_SIZE = 4096
LEARNING_RATE = 1e-3
WARMUP_STEPS = 10
DEFAULT_OUT = Path("benchmarks") / "results" / "layers.md"
BENCH_EXTRA = "pip install -c constraints.txt -e \".[bench]\" (extra lipsurrogate[bench])"


@dataclass
class BenchCase:
    """One benchmarked model, or the reason it could not be built."""

    name: str
    description: str
    model: nn.Module | None = None
    after_step: Callable[[nn.Module], object] | None = None
    unavailable: str | None = None
    optimizer: torch.optim.Optimizer | None = None
    round_ms_per_step: list[float] = field(default_factory=list)
    context: Callable[[], object] | None = None


def build_plain_mlp(activation: type[nn.Module] = nn.ReLU) -> nn.Module:
    """Return the reference unconstrained network (``Linear`` + ``activation``)."""
    widths = [IN_FEATURES] + [WIDTH] * DEPTH
    layers: list[nn.Module] = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(n_in, n_out), activation()]
    layers.append(nn.Linear(WIDTH, OUT_FEATURES))
    return nn.Sequential(*layers)


def build_lipsurrogate(norm: str, enforce: str = "reparametrize") -> nn.Module:
    """Return a :class:`~lipsurrogate.nn.LipschitzMLP` with GroupSort (group size 2)."""
    return LipschitzMLP(
        IN_FEATURES,
        OUT_FEATURES,
        (WIDTH,) * DEPTH,
        norm=norm,
        enforce=enforce,
        activation="groupsort",
        group_size=2,
        seed=0,
    )


class ReluFormGroupSort(GroupSort):
    """GroupSort(2) as lipsurrogate trained it before 2026-12-03: ``(a - relu(a - b), b + relu(a - b))``
    through autograd (five elementwise passes each way); the baseline of the one-pass function."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=-1)
        d = torch.relu(a - b)
        return torch.cat([a - d, b + d], dim=-1)


def with_relu_form_groupsort(model: nn.Module) -> nn.Module:
    """``model`` with every GroupSort(2) replaced by :class:`ReluFormGroupSort` (same function)."""
    for name, child in model.named_children():
        if isinstance(child, GroupSort) and child.group_size == 2:
            setattr(model, name, ReluFormGroupSort(2))
        else:
            with_relu_form_groupsort(child)
    return model


def build_torchlip() -> nn.Module:
    """Return a deel-torchlip network: ``SpectralLinear`` (Bjorck on) + ``GroupSort2``."""
    from deel import torchlip

    widths = [IN_FEATURES] + [WIDTH] * DEPTH
    layers: list[nn.Module] = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [torchlip.SpectralLinear(n_in, n_out), torchlip.GroupSort2()]
    layers.append(torchlip.SpectralLinear(WIDTH, OUT_FEATURES))
    return torchlip.Sequential(*layers)


def build_monotonicnetworks() -> nn.Module:
    """Return a monotonicnetworks network: ``LipschitzLinear(kind="one")`` + ``GroupSort``."""
    import monotonicnetworks as lmn

    widths = [IN_FEATURES] + [WIDTH] * DEPTH
    layers: list[nn.Module] = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        # GroupSort takes the number of groups; width // 2 groups means pairs.
        layers += [lmn.LipschitzLinear(n_in, n_out, kind="one"), lmn.GroupSort(n_groups=n_out // 2)]
    layers.append(lmn.LipschitzLinear(WIDTH, OUT_FEATURES, kind="one"))
    return nn.Sequential(*layers)


def make_cases() -> list[BenchCase]:
    """Build every benchmarked model (peers that fail to import become placeholder rows)."""
    cases = [
        BenchCase("plain MLP", "nn.Linear + ReLU, unconstrained (reference)", build_plain_mlp()),
        BenchCase(
            "plain MLP + GroupSort2",
            "nn.Linear + lipsurrogate GroupSort(2), unconstrained: the activation's share of the cost",
            build_plain_mlp(GroupSort),
        ),
        BenchCase(
            "lipsurrogate l1-column",
            "LipschitzMLP, per-column l1 norm (Eq. 2.8), reparametrized, GroupSort2",
            build_lipsurrogate("l1-column"),
        ),
        BenchCase(
            "lipsurrogate l1-column, relu-form GroupSort",
            "the same, GroupSort(2) through autograd as a - relu(a - b), b + relu(a - b) (before 2026-12-03)",
            with_relu_form_groupsort(build_lipsurrogate("l1-column")),
        ),
        BenchCase(
            "lipsurrogate l1-column, torch pair step",
            "the same, GroupSort(2) as torch.minimum / maximum and threshold_backward (before 2026-12-07)",
            build_lipsurrogate("l1-column"),
            context=lambda: flag_off(activations, "USE_COMPILED"),
        ),
        BenchCase(
            "lipsurrogate l1-column, torch norm formula",
            "the same, the norm through autograd's eight operations forward and twelve backward (before stop 36)",
            build_lipsurrogate("l1-column"),
            context=lambda: flag_off(_fused_norms, "USE_FUSED"),
        ),
        BenchCase(
            "lipsurrogate l1",
            "LipschitzMLP, l1 operator norm (Eq. 2.7, clip), reparametrized, GroupSort2",
            build_lipsurrogate("l1"),
        ),
        BenchCase(
            "lipsurrogate linf-row",
            "LipschitzMLP, per-row l-inf norm, reparametrized, GroupSort2",
            build_lipsurrogate("linf-row"),
        ),
        BenchCase(
            "lipsurrogate spectral",
            "LipschitzMLP, spectral norm (power iteration), reparametrized, GroupSort2",
            build_lipsurrogate("spectral"),
        ),
        BenchCase(
            "lipsurrogate l1-column project",
            "LipschitzMLP, l1-column, projection after each Adam step",
            build_lipsurrogate("l1-column", enforce="project"),
            after_step=project_weights_,
        ),
    ]
    peers = [
        (
            "deel-torchlip",
            "torchlip.SpectralLinear (power iteration + Bjorck, default) + GroupSort2",
            build_torchlip,
        ),
        (
            "monotonicnetworks",
            'lmn.LipschitzLinear(kind="one") (per-column l1) + lmn.GroupSort(n_groups=64)',
            build_monotonicnetworks,
        ),
    ]
    for name, description, builder in peers:
        try:
            model = builder()
        except ImportError:
            cases.append(
                BenchCase(name, description, unavailable=f"not installed: {BENCH_EXTRA}")
            )
        else:
            cases.append(BenchCase(name, description, model))
    return cases


def run_steps(case: BenchCase, inputs: torch.Tensor, targets: torch.Tensor, n_steps: int) -> None:
    """Run ``n_steps`` training steps (forward, backward, Adam, optional projection)."""
    model, optimizer = case.model, case.optimizer
    with case.context() if case.context is not None else contextlib.nullcontext():
        for _ in range(n_steps):
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(model(inputs), targets)
            loss.backward()
            optimizer.step()
            if case.after_step is not None:
                case.after_step(model)


def benchmark(cases: list[BenchCase], n_rounds: int, steps_per_round: int) -> None:
    """Warm up every runnable case, then time them in interleaved round-robin rounds."""
    inputs = torch.rand(BATCH_SIZE, IN_FEATURES) * 2.0 - 1.0
    targets = torch.randn(BATCH_SIZE, OUT_FEATURES)
    runnable = [case for case in cases if case.model is not None]
    for case in runnable:
        case.model.train()
        case.optimizer = torch.optim.Adam(case.model.parameters(), lr=LEARNING_RATE)
        run_steps(case, inputs, targets, WARMUP_STEPS)
    for round_index in range(n_rounds):
        shift = round_index % len(runnable)  # each round starts at another model: no fixed place in the order
        for case in runnable[shift:] + runnable[:shift]:
            start = time.perf_counter()
            run_steps(case, inputs, targets, steps_per_round)
            elapsed = time.perf_counter() - start
            case.round_ms_per_step.append(1e3 * elapsed / steps_per_round)
        print(f"round {round_index + 1}/{n_rounds} done", file=sys.stderr, flush=True)


def format_table(cases: list[BenchCase]) -> str:
    """Return the Markdown results table."""
    lines = [
        "| model | what it is | ms/step | steps/s | ratio to plain MLP |",
        "|---|---|---:|---:|---:|",
    ]
    for case in cases:
        if case.unavailable is not None:
            lines.append(f"| {case.name} | {case.description} | {case.unavailable} | – | – |")
            continue
        median_ms = statistics.median(case.round_ms_per_step)
        # the ratio within each round, then the median: drifts of this shared host between rounds cancel
        ratio = statistics.median(ms / base for ms, base in zip(case.round_ms_per_step, cases[0].round_ms_per_step))
        lines.append(
            f"| {case.name} | {case.description} | {median_ms:.2f} | {1e3 / median_ms:.1f} "
            f"| {ratio:.2f} |"
        )
    return "\n".join(lines)


def format_report(table: str, n_rounds: int, steps_per_round: int, command: str, malloc: str = "glibc defaults") -> str:
    """Return the Markdown file content: context, method and the table."""
    uname = platform.uname()
    peer_versions = []
    for dist in ("deel-torchlip", "monotonicnetworks"):
        try:
            from importlib.metadata import version

            peer_versions.append(f"{dist} {version(dist)}")
        except Exception:  # noqa: BLE001 - any metadata failure means "not installed"
            peer_versions.append(f"{dist} not installed")
    return "\n".join(
        [
            "# Layer benchmark: training steps per second",
            "",
            f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"- command: `{command}`",
            f"- lipsurrogate {lipsurrogate.__version__}, torch {torch.__version__}, "
            + ", ".join(peer_versions),
            f"- python {platform.python_version()}, {uname.system} {uname.release}, "
            f"{uname.machine}, processor: {platform.processor() or 'unknown'}, "
            f"CPUs: {os.cpu_count()}",
            f"- torch threads: {torch.get_num_threads()} (default); malloc thresholds: {malloc}",
            f"- workload: {IN_FEATURES} -> {DEPTH} x {WIDTH} -> {OUT_FEATURES}, batch "
            f"{BATCH_SIZE}, MSE on random data, Adam (lr {LEARNING_RATE}); one step = forward + "
            "backward + optimizer step (+ projection where noted)",
            f"- method: {WARMUP_STEPS} warm-up steps per model, then {n_rounds} interleaved "
            f"rounds of {steps_per_round} steps per model (round-robin); median over rounds of "
            "ms/step; ratio = median over rounds of the model's ms/step over the plain MLP's in the same "
            "round (each round starts at another model)",
            "",
            table,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the benchmark, print the table and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 5 steps")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 9)")
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default 20)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"report file (default {DEFAULT_OUT})"
    )
    parser.add_argument("--default-malloc", action="store_true", help="keep glibc's own malloc thresholds")
    args = parser.parse_args(argv)
    malloc = "glibc defaults" if args.default_malloc or not tune_malloc() else "tuned (lipsurrogate._allocator)"
    n_rounds = args.rounds or (2 if args.quick else 9)
    steps_per_round = args.steps or (5 if args.quick else 20)
    cli_args = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "benchmarks/bench_layers.py", *cli_args])

    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
    cases = make_cases()
    benchmark(cases, n_rounds, steps_per_round)
    table = format_table(cases)
    print(table)
    write(args.out, format_report(table, n_rounds, steps_per_round, command, malloc))


if __name__ == "__main__":
    main()
