r"""scikit-learn compatible Lipschitz (and monotonic) estimators.

:class:`LipschitzClassifier` and :class:`LipschitzRegressor` wrap a
:class:`~lipsurrogate.nn.LipschitzMLP` in scikit-learn's estimator conventions (``__init__``
stores its arguments, ``fit`` returns ``self``, fitted attributes end in ``_``), so an analyst
can put one where a BDT was, in a pipeline, a grid search or a cross-validation. The network is

.. math::

    f(x) = g(z) + \lambda \sum_j s_j z_j, \qquad z_j = (x_j - \mu_j) / \sigma_j,

with :math:`g` a GroupSort network whose layer norms (Eq. 2.8 of Kitouni et al. by default)
multiply to at most :math:`\lambda`, :math:`s_j \in \{+1, 0, -1\}` the monotonic constraints and
:math:`\mu, \sigma` the training mean and standard deviation (fixed after ``fit``; with
``standardize=False`` they are 0 and 1). Hence, **certified** for every input, also outside the
training data: :math:`\partial f / \partial x_j \in [0, 2\lambda/\sigma_j]` for :math:`s_j = +1`,
:math:`[-2\lambda/\sigma_j, 0]` for :math:`s_j = -1` and :math:`[-\lambda/\sigma_j, \lambda/\sigma_j]`
otherwise; :meth:`LipschitzClassifier.certified_bounds` computes the exact intervals from the
trained weights in float64 (:func:`lipsurrogate.bounds.lipschitz_bounds`).

scikit-learn is optional: with it installed the classes inherit from ``BaseEstimator`` and the
mixins and validate their input with ``sklearn.utils.validation.validate_data``; without it a
small built-in base provides ``get_params``/``set_params``/``score`` and the same checks.

Conformance: both classes pass every check of ``sklearn.utils.estimator_checks.check_estimator``
(scikit-learn 1.9, ``tests/test_estimators.py``) with no expected failures. Checks that do not
apply are skipped by scikit-learn itself: the classifier declares itself binary-only
(``multi_class=False`` tag), so the classifier checks run on two classes; ``fit`` takes no
``sample_weight``, so the sample-weight checks are not run; the array-API check is skipped unless
``SCIPY_ARRAY_API=1`` is set.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np

from ._threads import torch_threads
from .exceptions import ConfigurationError, DataSchemaError

__all__ = ["LipschitzClassifier", "LipschitzRegressor", "NotFittedError"]

try:  # scikit-learn is optional
    from sklearn.base import BaseEstimator as _BaseEstimator
    from sklearn.base import ClassifierMixin as _ClassifierMixin
    from sklearn.base import RegressorMixin as _RegressorMixin
    from sklearn.exceptions import NotFittedError

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - exercised in the no-sklearn test by patching
    HAVE_SKLEARN = False

    class NotFittedError(ValueError, AttributeError):
        """Raised when a method needs a fitted estimator (scikit-learn's class when installed)."""

    class _BaseEstimator:
        """``get_params``/``set_params`` from the ``__init__`` signature, as scikit-learn does."""

        @classmethod
        def _get_param_names(cls):
            import inspect

            sig = inspect.signature(cls.__init__)
            return sorted(p.name for p in sig.parameters.values() if p.name != "self")

        def get_params(self, deep: bool = True) -> dict:
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                                     f"Valid parameters are: {valid}.")
                setattr(self, key, value)
            return self

        def __repr__(self) -> str:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class _ClassifierMixin:
        _estimator_type = "classifier"

        def score(self, X, y) -> float:
            """Mean accuracy on ``(X, y)`` (exact)."""
            return float(np.mean(self.predict(X) == np.asarray(y)))

    class _RegressorMixin:
        _estimator_type = "regressor"

        def score(self, X, y) -> float:
            """Coefficient of determination R^2 on ``(X, y)`` (exact)."""
            y = np.asarray(y, dtype=np.float64)
            residual = np.sum((y - self.predict(X)) ** 2)
            total = np.sum((y - y.mean()) ** 2)
            return float(1.0 - residual / total) if total > 0 else 0.0


def _validate(estimator, X, y=None, *, reset: bool, y_numeric: bool = False):
    """Check ``X`` (and ``y``) as scikit-learn does, and record / compare ``n_features_in_``."""
    if HAVE_SKLEARN:
        try:
            from sklearn.utils.validation import validate_data
        except ImportError:  # scikit-learn < 1.6
            validate_data = None
        kwargs = dict(reset=reset, dtype=np.float64)
        if y is not None:
            kwargs["y_numeric"] = y_numeric
        if validate_data is not None:
            return validate_data(estimator, X, **({"y": y} if y is not None else {}), **kwargs)
        return estimator._validate_data(X, **({"y": y} if y is not None else {}), **kwargs)
    X = _check_array(X, estimator)
    if reset:
        estimator.n_features_in_ = X.shape[1]
    elif X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    if y is None:
        return X
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"Expected y of shape ({len(X)},). Got shape {y.shape} instead.")
    if y_numeric:
        y = y.astype(np.float64)
        if not np.isfinite(y).all():
            raise ValueError("Input y contains NaN or infinity.")
    return X, y


def _check_array(X, estimator) -> np.ndarray:
    if hasattr(X, "toarray"):
        raise TypeError("Sparse data was passed, but dense data is required. Use X.toarray() to convert.")
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{type(estimator).__name__} expects numeric features: {err}") from None
    if X.ndim != 2:
        raise ValueError(f"Expected a 2D array of shape (n_samples, n_features). Got an array of shape {X.shape}.")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"Found array with shape {X.shape}; at least 1 sample and 1 feature are required.")
    if np.isnan(X).any():
        raise ValueError("Input X contains NaN.")
    if not np.isfinite(X).all():
        raise ValueError("Input X contains infinity.")
    return X


def _check_fitted(estimator) -> None:
    if not hasattr(estimator, "model_"):
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with appropriate "
            "arguments before using this estimator."
        )


def _seed(random_state) -> int:
    if HAVE_SKLEARN:
        from sklearn.utils import check_random_state

        return int(check_random_state(random_state).randint(0, 2**31 - 1))
    if random_state is None:
        return int(np.random.default_rng().integers(0, 2**31 - 1))
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    raise ValueError(f"'random_state' must be None, an int or a RandomState. Got {random_state!r} instead.")


class _LipschitzEstimator(_BaseEstimator):
    """Shared fitting of the two estimators (not public)."""

    _loss_name = "mse"

    def _check_params(self, n_features: int) -> list[int] | None:
        name = type(self).__name__
        constraints = self.monotonic_constraints
        if constraints is not None:
            constraints = list(constraints)
            if len(constraints) != n_features:
                raise ConfigurationError(
                    f"The 'monotonic_constraints' parameter of {name} must have one entry per feature "
                    f"({n_features}). Got {len(constraints)} entries instead."
                )
            if any(c not in (-1, 0, 1) for c in constraints):
                raise ConfigurationError(
                    f"The 'monotonic_constraints' parameter of {name} must hold +1 (increasing), -1 "
                    f"(decreasing) or 0 (free). Got {constraints!r} instead."
                )
            constraints = [int(c) for c in constraints]
            if not any(constraints):
                constraints = None
        for pname in ("steps", "batch_size"):
            value = getattr(self, pname)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ConfigurationError(f"The '{pname}' parameter of {name} must be a positive integer. "
                                         f"Got {value!r} instead.")
        for pname in ("lipschitz", "lr"):
            value = getattr(self, pname)
            if not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
                raise ConfigurationError(f"The '{pname}' parameter of {name} must be a positive number. "
                                         f"Got {value!r} instead.")
        return constraints

    def _build_and_train(self, X: np.ndarray, target: np.ndarray, loss, init_bias: float):
        import torch

        from .nn import LipschitzMLP, to_plain
        from .train import train

        constraints = self._check_params(X.shape[1])
        seed = _seed(self.random_state)
        if self.standardize:
            offset = X.mean(axis=0)
            std = X.std(axis=0)
            scale = 1.0 / np.where(std > 0, std, 1.0)
        else:
            offset, scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
        model = LipschitzMLP(
            X.shape[1], 1, tuple(self.hidden), lipschitz=float(self.lipschitz), norm=self.norm,
            activation=self.activation, input_scale=scale.tolist(), input_offset=offset.tolist(),
            monotonic=constraints, seed=seed,
        )
        with torch.no_grad():
            model.linears[-1].bias.fill_(float(init_bias))
        with _torch_threads(self.n_jobs):
            history = train(
                model, torch.tensor(X, dtype=torch.float32), torch.tensor(target, dtype=torch.float32),
                loss, steps=int(self.steps), batch_size=int(self.batch_size), lr=float(self.lr), seed=seed,
                progress=bool(self.verbose), description=type(self).__name__,
            )
        # Note [float64 evaluation]: the trained float32 weights, evaluated in float64, so that a
        # row's prediction does not depend on the batch it comes in (float32 GEMM blocking does),
        # and the function predicted is the one lipschitz_bounds certifies.
        self.model_ = to_plain(model).double()
        self.loss_curve_ = list(history.losses)
        return self

    def _raw(self, X) -> np.ndarray:
        """Network output f(x), evaluated in float64 from the trained weights."""
        import torch

        _check_fitted(self)
        X = _validate(self, X, reset=False)
        with torch.no_grad(), _torch_threads(self.n_jobs):
            out = self.model_(torch.as_tensor(X, dtype=torch.float64))
        return out.numpy()[:, 0]

    def certified_bounds(self):
        """Certified intervals of :math:`\\partial f / \\partial x_j` in the raw input units.

        Returns :class:`lipsurrogate.bounds.LipschitzBounds` computed in float64 from the trained
        weights (**certified upper bounds**, never estimates); for the classifier ``f`` is the
        logit *before* the temperature (divide by ``temperature`` for the decision function).
        """
        from .bounds import lipschitz_bounds

        _check_fitted(self)
        return lipschitz_bounds(self.model_)

    def export_numpy(self, path, dtype: str = "float32"):
        """Write the fitted network with :func:`lipsurrogate.export.export_numpy` (numpy-only form)."""
        from .export import export_numpy

        _check_fitted(self)
        return export_numpy(self.model_, path, dtype=dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class LipschitzClassifier(_ClassifierMixin, _LipschitzEstimator):
    r"""Binary classifier: a monotonic Lipschitz network trained with temperature BCE.

    Parameters
    ----------
    hidden : sequence of int, default (20, 20, 20)
        Hidden widths (even, for GroupSort on pairs). The default is the LHCb trigger network.
    lipschitz : float, default 2.0
        :math:`\lambda`: the bound on the product of the layer norms, i.e. on
        :math:`|\partial g / \partial z_j|` (per standard deviation of feature ``j`` with
        ``standardize=True``).
    monotonic_constraints : sequence of {-1, 0, 1}, optional
        One entry per feature: +1 the output must not decrease with the feature, -1 not increase,
        0 free (the convention of LightGBM's ``monotone_constraints``). Guaranteed everywhere.
    norm : str, default "l1-column"
        Weight norm of :class:`~lipsurrogate.nn.LipschitzMLP` (Eq. 2.8 by default).
    activation : {"groupsort", "fullsort", "relu"}, default "groupsort"
    temperature : float, default 1.0
        :math:`\tau` in :math:`p = \sigma(f/\tau)`; :math:`\tau < 1` lets the probability
        saturate although :math:`f` has a bounded slope.
    steps, batch_size, lr : int, int, float
        Adam steps, mini-batch size (>= n means full batch) and learning rate (cosine decay).
    standardize : bool, default True
        Scale every feature by its training mean and standard deviation (fixed, not trained).
    random_state : int, RandomState or None
        Seeds weights and batch order; None draws a fresh seed.
    n_jobs : int or None, default 1
        torch intra-op threads while fitting and predicting (restored afterwards); None keeps
        torch's setting. Networks this small train fastest on one thread (on a loaded 2-core
        machine, 1.8 ms per step of 1024 candidates against 80 ms with two).
    verbose : bool
        Show a progress bar while training.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels; ``classes_[1]`` is the positive class (signal).
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when fitted on a DataFrame with string column names.
    model_ : LipschitzMLP
        The trained network (plain weights, evaluation mode).
    loss_curve_ : list of float
        Mini-batch training losses every 10 steps (estimates of the training loss).
    """

    def __init__(
        self,
        hidden: Sequence[int] = (20, 20, 20),
        lipschitz: float = 2.0,
        monotonic_constraints: Sequence[int] | None = None,
        norm: str = "l1-column",
        activation: str = "groupsort",
        temperature: float = 1.0,
        steps: int = 1000,
        batch_size: int = 256,
        lr: float = 5e-3,
        standardize: bool = True,
        random_state=None,
        n_jobs: int | None = 1,
        verbose: bool = False,
    ) -> None:
        self.hidden = hidden
        self.lipschitz = lipschitz
        self.monotonic_constraints = monotonic_constraints
        self.norm = norm
        self.activation = activation
        self.temperature = temperature
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.standardize = standardize
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    def fit(self, X, y):
        """Fit on features ``X`` (n, d) and binary labels ``y`` (n,); returns ``self``.

        Raises
        ------
        ValueError
            If ``X`` has NaN or infinite entries, ``y`` does not have exactly two classes or is
            continuous, or ``monotonic_constraints`` does not have one entry per feature.
        """
        from functools import partial

        from .train import bce_with_temperature

        _require_y(self, y)
        X, y = _validate(self, X, y, reset=True)
        _check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) != 2:
            raise DataSchemaError(
                f"Only binary classification is supported. {type(self).__name__} needs y with exactly 2 classes. Got "
                f"{len(classes)} class{'es' if len(classes) != 1 else ''} {classes[:10].tolist()} instead."
            )
        if not (isinstance(self.temperature, numbers.Real) and self.temperature > 0):
            raise ConfigurationError(f"The 'temperature' parameter of {type(self).__name__} must be positive. "
                                     f"Got {self.temperature!r} instead.")
        self.classes_ = classes
        target = (y == classes[1]).astype(np.float32)
        prior = float(np.clip(target.mean(), 1e-3, 1 - 1e-3))
        init = self.temperature * math.log(prior / (1 - prior))
        loss = partial(bce_with_temperature, temperature=float(self.temperature))
        return self._build_and_train(X, target, loss, init)

    def decision_function(self, X) -> np.ndarray:
        """The logit :math:`f(x)/\\tau` (float64; > 0 means ``classes_[1]``), shape (n,)."""
        return self._raw(X) / float(self.temperature)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n, 2): :math:`1 - \\sigma(f/\\tau)` and :math:`\\sigma(f/\\tau)`."""
        d = self.decision_function(X)
        p = np.empty_like(d)
        pos = d >= 0
        p[pos] = 1.0 / (1.0 + np.exp(-d[pos]))
        e = np.exp(d[~pos])
        p[~pos] = e / (1.0 + e)
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X) -> np.ndarray:
        """Predicted labels (``classes_[1]`` where the decision function is > 0)."""
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags


class LipschitzRegressor(_RegressorMixin, _LipschitzEstimator):
    r"""Regressor: a (monotonic) Lipschitz network trained on the mean squared error.

    The parameters are those of :class:`LipschitzClassifier` without ``temperature``; the
    default ``lipschitz`` is 1 (output units per standard deviation of each feature). The target
    is not rescaled, so the certified slopes are in the units of ``y``.

    Attributes
    ----------
    n_features_in_ : int
    model_ : LipschitzMLP
    loss_curve_ : list of float
    """

    def __init__(
        self,
        hidden: Sequence[int] = (20, 20, 20),
        lipschitz: float = 1.0,
        monotonic_constraints: Sequence[int] | None = None,
        norm: str = "l1-column",
        activation: str = "groupsort",
        steps: int = 1000,
        batch_size: int = 256,
        lr: float = 5e-3,
        standardize: bool = True,
        random_state=None,
        n_jobs: int | None = 1,
        verbose: bool = False,
    ) -> None:
        self.hidden = hidden
        self.lipschitz = lipschitz
        self.monotonic_constraints = monotonic_constraints
        self.norm = norm
        self.activation = activation
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.standardize = standardize
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    def fit(self, X, y):
        """Fit on features ``X`` (n, d) and real targets ``y`` (n,); returns ``self``."""
        _require_y(self, y)
        X, y = _validate(self, X, y, reset=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1:
            raise DataSchemaError(f"{type(self).__name__} fits one target: y must be 1-D. Got shape {y.shape}.")
        return self._build_and_train(X, y.astype(np.float32)[:, None], "mse", float(y.mean()))

    def predict(self, X) -> np.ndarray:
        """Predicted targets, shape (n,) (the network evaluated in float64)."""
        return self._raw(X)


def _torch_threads(n_jobs):
    """:func:`lipsurrogate._threads.torch_threads` after checking the estimator's ``n_jobs``."""
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs < 1):
        raise ConfigurationError(f"'n_jobs' must be None or a positive integer. Got {n_jobs!r} instead.")
    return torch_threads(None if n_jobs is None else int(n_jobs))


def _require_y(estimator, y) -> None:
    if y is None:
        raise ValueError(f"{type(estimator).__name__} requires y to be passed, but the target y is None.")


def _check_classification_targets(y) -> None:
    if HAVE_SKLEARN:
        from sklearn.utils.multiclass import check_classification_targets

        check_classification_targets(y)
        return
    y = np.asarray(y)
    if y.dtype.kind == "f" and np.any(y != np.round(y)):
        raise ValueError("Unknown label type: continuous. Expected binary class labels.")
