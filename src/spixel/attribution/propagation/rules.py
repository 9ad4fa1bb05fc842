"""Relevance rules: small objects that map the relevance of a layer's output to the relevance of its input.

A rule sees one layer through a :class:`Layer` view — the layer's function ``f(x, w)`` without bias, its effective
weight and bias (a batch-norm merged by a canonizer already folded in) — the layer input ``x`` recorded in the
forward pass and the relevance ``r`` of the layer output, and returns the relevance of ``x``; everything is
batched over dim 0 and per sample (no rule mixes the images of a batch). Linear maps are evaluated with autograd
(a forward of ``f`` with modified weights, then one vector–Jacobian product), so strides, padding (``"same"``
included), dilation and groups (depthwise convolutions) are honoured exactly.

The formulas are those of Zennit 0.5 (``zennit/rules.py``, Anders et al. 2021), which the tests compare against:

* stabiliser ``stab(z) = z + ε·sign(z)`` with ``sign(0) := +1``;
* :class:`Epsilon` ``R_i = x_i Σ_j w_ji R_j / stab(z_j)``, ``z = Wx + b``; ``ε = 0`` is LRP-0;
* :class:`ZPlus` (α1β0 with negative inputs allowed): ``z = W⁺x⁺ + W⁻x⁻ + b⁺``,
  ``R = x⁺ ⊙ W⁺ᵀ(R/z) + x⁻ ⊙ W⁻ᵀ(R/z)``;
* :class:`AlphaBeta` ``α·(x⁺W⁺ + x⁻W⁻ part over z⁺ = W⁺x⁺ + W⁻x⁻ + b⁺) − β·(x⁺W⁻ + x⁻W⁺ part over
  z⁻ = W⁻x⁺ + W⁺x⁻ + b⁻)``, ``α − β = 1``;
* :class:`Gamma` (generalised, Andéol et al. 2021): outputs ``z > 0`` are shared by ``(W + γW⁺)x⁺ + (W + γW⁻)x⁻``
  (bias ``b + γb⁺``), outputs ``z < 0`` by ``(W + γW⁻)x⁺ + (W + γW⁺)x⁻`` (bias ``b + γb⁻``), outputs ``z = 0``
  pass nothing;
* :class:`ZBox` ``z = Wx − W⁺L − W⁻H``, ``R = x ⊙ Wᵀs − L ⊙ W⁺ᵀs − H ⊙ W⁻ᵀs``, ``s = R/stab(z)``;
* :class:`Flat` ``R_i = Σ_j R_j / stab(#inputs of j)`` (weights 1, input 1, no bias);
* :class:`Norm` (sum / average pooling, residual sums) ``R_i = x_i ∂z_j/∂x_i R_j / stab(z_j)``;
* :class:`Pass` (activations, un-merged batch-norm) ``R_in = R_out``; :class:`Gradient` the layer's own
  vector–Jacobian product (max pooling: winner takes all).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "AlphaBeta",
    "Epsilon",
    "Excitation",
    "Flat",
    "Gamma",
    "Gradient",
    "Layer",
    "Norm",
    "NormHedge",
    "Pass",
    "Rule",
    "ZBox",
    "ZPlus",
    "stabilize",
]


def stabilize(z: Tensor, eps: float) -> Tensor:
    """``z + eps·sign(z)`` with ``sign(0) := +1`` (Zennit's ``Stabilizer``; zero denominators become ``eps``)."""
    return z + eps * ((z >= 0).to(z.dtype) * 2 - 1)


@dataclass
class Layer:
    """What a rule needs of a linear layer: ``fn(x, w)`` (the layer without bias, with weight ``w``), its effective
    ``weight`` and ``bias`` (``None``: no bias), and for the element-wise / pooling rules the plain forward ``call``."""

    module: nn.Module
    fn: Callable[[Tensor, Tensor], Tensor] | None = None
    weight: Tensor | None = None
    bias: Tensor | None = None
    call: Callable[[Tensor], Tensor] | None = None

    def affine(self, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
        assert self.fn is not None
        z = self.fn(x, w)
        if b is not None:
            z = z + b.view(1, -1, *([1] * (z.ndim - 2)))
        return z


def _leaf(t: Tensor) -> Tensor:
    return t.detach().requires_grad_(True)


def _vjp(outputs: list[Tensor], inputs: list[Tensor], cotangents: list[Tensor]) -> list[Tensor]:
    grads = torch.autograd.grad(outputs, inputs, cotangents, allow_unused=True)
    return [torch.zeros_like(i) if g is None else g for i, g in zip(inputs, grads, strict=True)]


def _pos(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(min=0)


def _neg(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.clamp(max=0)


class Rule:
    """Base class. ``kind``: the layers a rule binds to — ``"linear"`` (convolutions of any groups, dense layers),
    ``"elementwise"`` (activations, batch-norm), ``"pool"`` (pooling, residual sums) or ``"any"``."""

    name = "rule"
    kind = "linear"
    #: whether :meth:`relevance` reads the layer input (else the forward pass need not keep it)
    needs_input = True

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return asdict(self) if hasattr(self, "__dataclass_fields__") else {}

    def __repr__(self) -> str:
        p = ", ".join(f"{k}={v!r}" for k, v in self.params().items() if not isinstance(v, Tensor))
        return f"{self.name}({p})"


@dataclass(repr=False)
class Epsilon(Rule):
    """LRP-ε (Bach et al. 2015); ``epsilon=0`` is LRP-0 (a zero denominator still becomes ``0 + 0``: inf/NaN-free
    only with ε > 0)."""

    epsilon: float = 1e-6
    name = "epsilon"

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        assert layer.weight is not None
        xl = _leaf(x)
        z = layer.affine(xl, layer.weight, layer.bias)
        (g,) = _vjp([z], [xl], [r / stabilize(z.detach(), self.epsilon)])
        return x * g


@dataclass(repr=False)
class ZPlus(Rule):
    """LRP-z⁺ = α1β0 (Montavon et al. 2017), with negative inputs paired with negative weights (Zennit's form)."""

    stabilizer: float = 1e-6
    name = "zplus"

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        assert layer.weight is not None
        w = layer.weight
        xp = _leaf(x.clamp(min=0))
        z = layer.affine(xp, w.clamp(min=0), _pos(layer.bias))
        ins, outs = [xp], [z]
        has_neg = bool((x < 0).any())
        if has_neg:
            xn = _leaf(x.clamp(max=0))
            zn = layer.affine(xn, w.clamp(max=0))
            ins.append(xn)
            outs.append(zn)
            total = (z + zn).detach()
        else:
            total = z.detach()
        s = r / stabilize(total, self.stabilizer)
        gs = _vjp(outs, ins, [s] * len(outs))
        out = xp.detach() * gs[0]
        if has_neg:
            out = out + ins[1].detach() * gs[1]
        return out


@dataclass(repr=False)
class AlphaBeta(Rule):
    """LRP-αβ (Bach et al. 2015), ``α − β = 1``: positive contributions weighted by α, negative ones by β."""

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6
    name = "alpha_beta"

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        assert layer.weight is not None
        w, b = layer.weight, layer.bias
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        xp = _leaf(x.clamp(min=0))
        has_neg = bool((x < 0).any())
        # positive part z⁺ = W⁺x⁺ + W⁻x⁻ + b⁺, negative part z⁻ = W⁻x⁺ + W⁺x⁻ + b⁻
        zp1 = layer.affine(xp, wp, _pos(b))
        zn1 = layer.affine(xp, wn, _neg(b))
        if has_neg:
            xn = _leaf(x.clamp(max=0))
            zp2 = layer.affine(xn, wn)
            zn2 = layer.affine(xn, wp)
            zpos, zneg = (zp1 + zp2).detach(), (zn1 + zn2).detach()
        else:
            zpos, zneg = zp1.detach(), zn1.detach()
        sp = self.alpha * r / stabilize(zpos, self.stabilizer)
        sn = -self.beta * r / stabilize(zneg, self.stabilizer)
        if not has_neg:
            (g,) = _vjp([zp1, zn1], [xp], [sp, sn])
            return xp.detach() * g
        gp, gn = _vjp([zp1, zn1, zp2, zn2], [xp, xn], [sp, sn, sp, sn])
        return xp.detach() * gp + xn.detach() * gn


@dataclass(repr=False)
class Gamma(Rule):
    """LRP-γ (Montavon et al. 2019) in its generalised form for signed inputs (Andéol et al. 2021; Zennit)."""

    gamma: float = 0.25
    stabilizer: float = 1e-6
    name = "gamma"

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        assert layer.weight is not None
        w, b, g = layer.weight, layer.bias, self.gamma
        w_up, w_dn = w + g * w.clamp(min=0), w + g * w.clamp(max=0)
        b_up = None if b is None else b + g * b.clamp(min=0)
        b_dn = None if b is None else b + g * b.clamp(max=0)
        out = layer.affine(x, w, b)
        xp = _leaf(x.clamp(min=0))
        has_neg = bool((x < 0).any())
        zp1 = layer.affine(xp, w_up, b_up)  # z > 0 outputs: (W + γW⁺)x⁺ + (W + γW⁻)x⁻
        zn1 = layer.affine(xp, w_dn, b_dn)  # z < 0 outputs: (W + γW⁻)x⁺ + (W + γW⁺)x⁻
        if has_neg:
            xn = _leaf(x.clamp(max=0))
            zp2 = layer.affine(xn, w_dn)
            zn2 = layer.affine(xn, w_up)
            zpos, zneg = (zp1 + zp2).detach(), (zn1 + zn2).detach()
        else:
            zpos, zneg = zp1.detach(), zn1.detach()
        sp = r * (out > 0).to(r.dtype) / stabilize(zpos, self.stabilizer)
        sn = r * (out < 0).to(r.dtype) / stabilize(zneg, self.stabilizer)
        if not has_neg:
            (gr,) = _vjp([zp1, zn1], [xp], [sp, sn])
            return xp.detach() * gr
        gp, gn = _vjp([zp1, zn1, zp2, zn2], [xp, xn], [sp, sn, sp, sn])
        return xp.detach() * gp + xn.detach() * gn


@dataclass(repr=False)
class ZBox(Rule):
    """z^B / bounded rule (Montavon et al. 2017) for the input layer: inputs bounded by ``low ≤ x ≤ high``
    (tensors broadcast to the input, e.g. ``(1, 3, 1, 1)`` per channel, or floats)."""

    low: Any = 0.0
    high: Any = 1.0
    stabilizer: float = 1e-6
    name = "zbox"

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        assert layer.weight is not None
        w = layer.weight
        lo = _leaf(torch.as_tensor(self.low, dtype=x.dtype, device=x.device).expand_as(x))
        hi = _leaf(torch.as_tensor(self.high, dtype=x.dtype, device=x.device).expand_as(x))
        xl = _leaf(x)
        z0 = layer.affine(xl, w)
        z1 = layer.affine(lo, w.clamp(min=0))
        z2 = layer.affine(hi, w.clamp(max=0))
        s = r / stabilize((z0 - z1 - z2).detach(), self.stabilizer)
        g0, g1, g2 = _vjp([z0, z1, z2], [xl, lo, hi], [s, s, s])
        return x * g0 - lo.detach() * g1 - hi.detach() * g2

    def params(self) -> dict[str, Any]:
        def show(v: Any) -> Any:
            return v.flatten().tolist() if isinstance(v, Tensor) else v

        return {"low": show(self.low), "high": show(self.high), "stabilizer": self.stabilizer}


@dataclass(repr=False)
class Flat(Rule):
    """LRP-flat (Lapuschkin et al. 2019): relevance spread uniformly over each output's receptive field."""

    stabilizer: float = 1e-6
    name = "flat"

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        assert layer.weight is not None
        ones = _leaf(torch.ones_like(x))
        z = layer.affine(ones, torch.ones_like(layer.weight))
        (g,) = _vjp([z], [ones], [r / stabilize(z.detach(), self.stabilizer)])
        return g


@dataclass(repr=False)
class Excitation(Rule):
    """Excitation backprop's marginal winning probability (Zhang et al. 2016; TorchRay's
    ``ExcitationBackpropContext``): ``P_i = x_i Σ_j w⁺_ji P_j / (Σ_i' x_i' w⁺_ji' + ε)`` with the input as is (no
    bias, no sign pairing, ``ε = 1e-20`` added, not signed). ``negate=True`` uses ``(−W)⁺`` — the flipped classifier
    of contrastive excitation backprop."""

    stabilizer: float = 1e-20
    negate: bool = False
    name = "excitation"

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        assert layer.weight is not None
        w = (-layer.weight if self.negate else layer.weight).clamp(min=0)
        xl = _leaf(x)
        z = layer.affine(xl, w)
        (g,) = _vjp([z], [xl], [r / (z.detach() + self.stabilizer)])
        return x * g


@dataclass(repr=False)
class Norm(Rule):
    """Sum/average pooling and residual sums: ``R_i = x_i ∂z/∂x_i · R / stab(z)`` (Zennit's ``Norm``)."""

    stabilizer: float = 1e-6
    name = "norm"
    kind = "pool"

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        assert layer.call is not None
        xl = _leaf(x)
        z = layer.call(xl)
        (g,) = _vjp([z], [xl], [r / stabilize(z.detach(), self.stabilizer)])
        return x * g

    def split(self, inputs: list[Tensor], r: Tensor) -> list[Tensor]:
        """A sum ``z = Σ_i x_i`` of same-shaped tensors: ``R_i = x_i · R / stab(z)``."""
        s = r / stabilize(sum(inputs[1:], inputs[0]), self.stabilizer)
        return [x * s for x in inputs]


@dataclass(repr=False)
class NormHedge(Norm):
    """A residual sum as in the LRP code of Chefer et al. (used by Relevance-CAM, AGF): the :class:`Norm` shares
    ``a_i = x_i R / z`` are rescaled so that input ``i`` receives ``|Σa_i| / Σ_k |Σa_k|`` of ``ΣR`` (per sample;
    0/0 := 0)."""

    name = "norm_hedge"

    def split(self, inputs: list[Tensor], r: Tensor) -> list[Tensor]:
        shares = super().split(inputs, r)
        total = r.flatten(1).sum(1)
        sums = [s.flatten(1).sum(1) for s in shares]
        denom = sum(v.abs() for v in sums)
        out = []
        for s, v in zip(shares, sums, strict=True):
            fact = torch.where(denom == 0, torch.zeros_like(v), v.abs() / torch.where(denom == 0, 1, denom)) * total
            scale = torch.where(v == 0, torch.zeros_like(v), fact / torch.where(v == 0, 1, v))
            out.append(s * scale.view(-1, *([1] * (s.ndim - 1))))
        return out


@dataclass(repr=False)
class Pass(Rule):
    """Relevance passes unchanged (activations; a batch-norm left un-merged)."""

    name = "pass"
    kind = "elementwise"
    needs_input = False

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        return r


@dataclass(repr=False)
class Gradient(Rule):
    """The layer's own vector–Jacobian product (max pooling: all of a window's relevance to its arg-max)."""

    name = "gradient"
    kind = "any"

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        assert layer.call is not None
        xl = _leaf(x)
        (g,) = _vjp([layer.call(xl)], [xl], [r])
        return g
