"""Exceptions raised by lipsurrogate.

Every class subclasses the builtin that a caller would expect, so ``except ValueError`` keeps
working; the specific classes let a caller tell a bad file from a bad certificate.
"""

__all__ = [
    "LipsurrogateError",
    "ConfigurationError",
    "ModelFileError",
    "CertificationError",
    "DataSchemaError",
    "SolverError",
]


class LipsurrogateError(Exception):
    """Base class of every error raised on purpose by lipsurrogate."""


class ConfigurationError(LipsurrogateError, ValueError):
    """An argument or a combination of arguments is invalid."""


class ModelFileError(LipsurrogateError, ValueError):
    """A saved model (weights or architecture file) is missing, corrupted or does not fit."""


class CertificationError(LipsurrogateError, RuntimeError):
    """A certified number cannot be computed, or its assumptions were found to be false."""


class DataSchemaError(LipsurrogateError, ValueError):
    """A data file or dataset does not have the layout that was expected (the message names both)."""


class SolverError(LipsurrogateError, RuntimeError):
    """A PDE solve failed, e.g. the solution became NaN or infinite (the message names the time)."""
