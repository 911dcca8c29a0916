"""Data sources: toy problems now; py-pde generators, analytic solutions and PDEBench loaders next.

Modules
-------
toys
    Seeded data of the toy problems of Kitouni et al.
"""
