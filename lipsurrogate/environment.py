"""Record the software environment of a run (as py-pde's ``pde.environment()`` does)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

__all__ = ["environment"]

_PACKAGES = ("lipsurrogate", "torch", "numpy", "scipy", "py-pde", "numba", "xarray", "h5py", "safetensors")


def environment() -> dict:
    """Python, platform, CPU count and the versions of the packages a run depends on."""
    import os

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
    }
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["torch_threads"] = torch.get_num_threads()
        info["cuda_available"] = bool(torch.cuda.is_available())
    return info
