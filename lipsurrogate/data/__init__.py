"""Data sources: py-pde generators with analytic or estimated references, loaders, simulations.

Modules
-------
generators
    py-pde solvers into labelled xarray datasets: heat2d (periodic and Dirichlet, closed-form
    references, **exact** solver errors, families with one compiled stepper), advection1d,
    burgers1d, allen-cahn1d, reaction-diffusion2d (solver errors **estimated** by a finer solve).
heat
    Fourier modes of the heat equation: closed form, rounding bounds, derivative ranges.
simulate
    Shared py-pde plumbing (frame times, backend choice, explicit stability limits).
distributed
    heat2d families on Dask (a local cluster or a scheduler address), written incrementally
    and resumably into one file.
dataset
    NetCDF-4/HDF5 files of datasets, written atomically.
gridded
    Any gridded file or DataArray (1 to 4 named axes in any order) as a checked field.
examples
    A 3-input example field with its own names, order, dtype and units (closed form).
pdebench
    Lazy loader for the four PDEBench file layouts.
trigger
    Seeded simulation of LHCb-like two-track trigger candidates with true lifetimes.
hepmass
    HEPMASS / HEPMASS-IMB CSV loader (chunked, strict) and a seeded synthetic generator.
toys
    Seeded data of the toy problems of Kitouni et al.
"""
