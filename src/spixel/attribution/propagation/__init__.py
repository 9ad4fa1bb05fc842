"""The relevance-propagation core: rules (:mod:`.rules`), composites that assign them to layers
(:mod:`.composites`), canonizers that put residual networks and batch-norm in rule form (:mod:`.canonizers`) and
the engine that runs them as the backward pass of the model's own autograd graph (:mod:`.core`).

The LRP family (:mod:`spixel.attribution.lrp`) and the other propagation methods are built on it."""

from .composites import COMPOSITES, Composite, make_composite
from .core import Propagator
from .rules import (
    AlphaBeta,
    Epsilon,
    Excitation,
    Flat,
    Gamma,
    Gradient,
    Layer,
    Norm,
    NormHedge,
    Pass,
    Rule,
    ZBox,
    ZPlus,
    stabilize,
)

__all__ = [
    "COMPOSITES",
    "AlphaBeta",
    "Composite",
    "Epsilon",
    "Excitation",
    "Flat",
    "Gamma",
    "Gradient",
    "Layer",
    "Norm",
    "NormHedge",
    "Pass",
    "Propagator",
    "Rule",
    "ZBox",
    "ZPlus",
    "make_composite",
    "stabilize",
]
