"""Composites: which rule each layer of a network gets.

A :class:`Composite` assigns rules by layer type — convolutions, dense layers, pooling, activations, batch-norm,
residual sums — with an optional special rule for the *first* linear layer (the first convolution or dense layer in
``model.named_modules()`` order, as Zennit's ``SpecialFirstLayerMapComposite``). The named composites are Zennit's
(``zennit/composites.py``, same rules, same defaults), plus single-rule composites and Kohlbrenner et al.'s
LRP-CMP:

=============================  ====================  ==================  ====================
name                           first linear layer    other convolutions  dense layers
=============================  ====================  ==================  ====================
``epsilon_plus_flat``          flat                  z⁺                  ε
``epsilon_plus``               —                     z⁺                  ε
``epsilon_gamma_box``          z^B (first conv)      γ                   ε
``epsilon_alpha2_beta1``       —                     α2β1                ε
``epsilon_alpha2_beta1_flat``  flat                  α2β1                ε
``epsilon`` / ``zplus`` /      —                     that rule           that rule
``gamma`` / ``alpha_beta`` /
``flat``
``zbox``                       z^B (first conv)      ε                   ε
``lrp_cmp``                    —                     αβ (``alpha``,      ε
                                                     ``beta``)
``zplus_box``                  z^B (first conv)      z⁺                  z⁺
=============================  ====================  ==================  ====================

``lrp_cmp`` is the rule layout of Kohlbrenner et al.'s LRP-CMP; the ``lrp_comp`` method fixes its parameters
(ε = 0.1, α1β0 or α2β1). Every composite: activations, dropout and un-merged batch-norm pass relevance
unchanged; sum/average pooling and residual sums take :class:`~.rules.Norm`; max pooling its gradient (winner
takes all).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from ...errors import BadParameterError
from .rules import AlphaBeta, Epsilon, Flat, Gamma, Gradient, Norm, Pass, Rule, ZBox, ZPlus

__all__ = ["COMPOSITES", "Composite", "make_composite"]

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
DENSE_TYPES = (nn.Linear,)
LINEAR_TYPES = (*CONV_TYPES, *DENSE_TYPES)
SUM_POOL_TYPES = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                  nn.AdaptiveAvgPool3d)  # fmt: skip
MAX_POOL_TYPES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                  nn.AdaptiveMaxPool3d)  # fmt: skip
BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
#: element-wise activations whose relevance passes unchanged (Zennit's ``Activation`` with ``Pass``)
ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.PReLU, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.SiLU,
                    nn.GELU, nn.Softplus, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.SELU, nn.CELU)  # fmt: skip


@dataclass(frozen=True)
class Composite:
    """A layer-type → rule map. ``first`` (optional) replaces the rule of the first layer of ``first_types``."""

    name: str
    conv: Rule
    dense: Rule
    first: Rule | None = None
    first_types: tuple[type[nn.Module], ...] = LINEAR_TYPES
    pool: Rule = field(default_factory=Norm)
    sum: Rule = field(default_factory=Norm)
    maxpool: Rule = field(default_factory=Gradient)
    activation: Rule = field(default_factory=Pass)
    batchnorm: Rule = field(default_factory=Pass)

    def rule_for(self, module: nn.Module, first: bool) -> Rule | None:
        """The rule of ``module`` (``None``: no rule for its type); ``first``: no earlier layer took ``first``."""
        if first and self.first is not None and isinstance(module, self.first_types):
            return self.first
        if isinstance(module, CONV_TYPES):
            return self.conv
        if isinstance(module, DENSE_TYPES):
            return self.dense
        if isinstance(module, BATCHNORM_TYPES):
            return self.batchnorm
        if isinstance(module, SUM_POOL_TYPES):
            return self.pool
        if isinstance(module, MAX_POOL_TYPES):
            return self.maxpool
        if isinstance(module, ACTIVATION_TYPES):
            return self.activation
        return None

    def describe(self) -> dict[str, str]:
        d = {"conv": repr(self.conv), "dense": repr(self.dense)}
        if self.first is not None:
            d["first"] = repr(self.first)
        return d


#: the composite names :func:`make_composite` knows
COMPOSITES = (
    "epsilon_plus_flat",
    "epsilon_plus",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
    "epsilon",
    "zplus",
    "gamma",
    "alpha_beta",
    "flat",
    "zbox",
    "lrp_cmp",
    "zplus_box",
)


def make_composite(
    name: str,
    *,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    alpha: float = 2.0,
    beta: float = 1.0,
    stabilizer: float = 1e-6,
    low: Any = 0.0,
    high: Any = 1.0,
) -> Composite:
    """The composite ``name`` (see the module table) with the given rule parameters. ``alpha``/``beta`` are used by
    ``alpha_beta`` (and ``lrp_cmp``); the ``alpha2_beta1`` composites fix α = 2, β = 1 as their names say."""
    if name not in COMPOSITES:
        raise BadParameterError(f"unknown composite {name!r}; choose one of: {', '.join(COMPOSITES)}")
    eps = Epsilon(epsilon)
    c = _build(name, eps, epsilon, gamma, alpha, beta, stabilizer, low, high)
    return replace(c, pool=Norm(stabilizer), sum=Norm(stabilizer))


def _build(
    name: str,
    eps: Rule,
    epsilon: float,
    gamma: float,
    alpha: float,
    beta: float,
    stabilizer: float,
    low: Any,
    high: Any,
) -> Composite:
    if name == "epsilon_plus_flat":
        return Composite(name, ZPlus(stabilizer), eps, first=Flat(stabilizer))
    if name == "epsilon_plus":
        return Composite(name, ZPlus(stabilizer), eps)
    if name == "epsilon_gamma_box":
        return Composite(name, Gamma(gamma, stabilizer), eps, first=ZBox(low, high, stabilizer), first_types=CONV_TYPES)
    if name == "epsilon_alpha2_beta1":
        return Composite(name, AlphaBeta(2.0, 1.0, stabilizer), eps)
    if name == "epsilon_alpha2_beta1_flat":
        return Composite(name, AlphaBeta(2.0, 1.0, stabilizer), eps, first=Flat(stabilizer))
    if name == "zbox":
        return Composite(name, eps, eps, first=ZBox(low, high, stabilizer), first_types=CONV_TYPES)
    if name == "zplus_box":  # deep Taylor for ReLU nets: the rules of the CLRP and SGLRP reference code
        zp = ZPlus(stabilizer)
        return Composite(name, zp, zp, first=ZBox(low, high, stabilizer), first_types=CONV_TYPES)
    if name == "lrp_cmp":
        conv = ZPlus(stabilizer) if (alpha, beta) == (1.0, 0.0) else AlphaBeta(alpha, beta, stabilizer)
        return Composite(name, conv, eps)
    single: Rule = {
        "epsilon": eps,
        "zplus": ZPlus(stabilizer),
        "gamma": Gamma(gamma, stabilizer),
        "alpha_beta": AlphaBeta(alpha, beta, stabilizer),
        "flat": Flat(stabilizer),
    }[name]
    return Composite(name, single, single)
