"""Optimizee families: one file per family. See `base.py` for the interface."""
from .base import Problem, ProblemFamily
from .mlp import MLPFamily, MLPProblem
from .quadratic import QuadraticFamily, QuadraticProblem

__all__ = ["Problem", "ProblemFamily", "MLPFamily", "MLPProblem", "QuadraticFamily", "QuadraticProblem"]
