"""Optimizee families: one file per family. See `base.py` for the interface."""
from .base import Problem, ProblemFamily
from .batch import MetaBatch
from .cnn import CNNFamily, CNNProblem
from .mlp import MLPFamily, MLPProblem
from .quadratic import QuadraticFamily, QuadraticProblem
from .style import StyleFamily, StyleProblem

__all__ = ["Problem", "ProblemFamily", "CNNFamily", "CNNProblem", "MetaBatch", "MLPFamily", "MLPProblem", "QuadraticFamily", "QuadraticProblem",
           "StyleFamily", "StyleProblem"]
