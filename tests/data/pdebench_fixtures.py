"""Tiny files with exactly the published PDEBench layouts (shapes shrunk)."""

import h5py
import numpy as np


def flat_tensor_1d(path, n=3, nt=4, nx=8, extra_time=True):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["tensor"] = rng.normal(size=(n, nt, nx)).astype(np.float32)
        f["x-coordinate"] = np.linspace(-1 + 1 / nx, 1 - 1 / nx, nx).astype(np.float32)
        f["t-coordinate"] = np.linspace(0, 2, nt + 1 if extra_time else nt).astype(np.float32)
    return path


def cfd_2d(path, n=2, nt=3, nx=6, ny=5):
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        for name in ["density", "pressure", "Vx", "Vy"]:
            f[name] = rng.normal(size=(n, nt, nx, ny)).astype(np.float32)
        f["x-coordinate"] = np.linspace(0, 1, nx)
        f["y-coordinate"] = np.linspace(0, 1, ny)
        f["t-coordinate"] = np.linspace(0, 1, nt + 1)
    return path


def darcy(path, n=2, nx=6):
    rng = np.random.default_rng(2)
    with h5py.File(path, "w") as f:
        f["tensor"] = rng.normal(size=(n, 1, nx, nx)).astype(np.float32)
        f["nu"] = rng.uniform(size=(n, nx, nx)).astype(np.float32)
        f["x-coordinate"] = np.linspace(0, 1, nx)
        f["y-coordinate"] = np.linspace(0, 1, nx)
    return path


def per_seed_2d(path, n=2, nt=5, nx=4, ny=3, channels=2):
    """Per-seed groups; space stored as (y, x) as in the 2D diffusion-reaction file."""
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        for i in range(n):
            g = f.create_group(f"{i:04d}")
            g.create_dataset("data", data=rng.normal(size=(nt, ny, nx, channels)).astype(np.float32), compression="lzf")
            g["grid/x"] = np.linspace(-1, 1, nx).astype(np.float32)
            g["grid/y"] = np.linspace(-1, 1, ny).astype(np.float32)
            g["grid/t"] = np.linspace(0, 5, nt).astype(np.float32)
            g.attrs["config"] = "sim:\n  seed: %d\n" % i
    return path
