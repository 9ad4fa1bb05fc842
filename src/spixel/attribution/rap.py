"""RAP — Relative Attributing Propagation (Nam, Gur, Choi, Wolf & Lee, AAAI 2020), on the propagation core.

RAP separates, at every layer, the relevance into the parts carried by *positive* and by *negative* contributions
``x_i w_ij`` and shares both signs of the incoming relevance over both, then shifts the result uniformly so that
every layer conserves the total (spec §5.4b, the lineage RAP → RSP → AE). The rules, written from the released
code (``wjNam/Relative_Attributing_Propagation``, ``modules/layers.py`` ``RAP_relprop``, ``main.py``):

* **output layer** (the classifier, the last dense or convolution layer; the code's ``first_prop``, triggered by a
  one-hot relevance): every input gets its contribution ``c_i = x_i w_ti`` to the target logit, the bias ``b_t``
  shared over the positive (``x⁺w⁺``) and negative (``x⁺w⁻``) contributions in proportion of the positive and
  negative totals; then ``redistribute``: ``R_i = |c_i| · Σc / Σ|c|``;
* **hidden dense and convolution layers** (``pos_prop``): with ``Z1 = x⁺ ⊙ W⁺``, ``Z2 = −x⁺ ⊙ W⁻`` (both ≥ 0,
  masked to outputs with relevance), ``R⁺`` is shared over ``Z1`` in full and over ``Z2`` in proportion
  ``Z2/(Z1+Z2)``, and likewise ``R⁻``; the inputs' total is then shifted back to ``ΣR`` uniformly over the inputs
  that received relevance (``shift_rel``); negative inputs take the same path with ``−x⁻ ⊙ W⁺`` and ``x⁻ ⊙ W⁻``;
* **first convolution** (3 input channels): z^B with ``L = min x``, ``H = max x`` of each image (``final_backward``);
* max / average pooling, residual sums: the z-rule ``x ∂z/∂x · R/z`` (0/0 := 0); ReLU, dropout and batch-norm pass
  relevance (the code's BN rule removes and re-adds a per-channel bias share: the identity wherever the BN input is
  non-zero); batch-norm is not merged.

**Choices.** Faithful to the released code, including one asymmetry we do not understand: in its *dense* layers the
negative section ``R⁻`` is first shared over the positive contributions ``Z1`` (``S1n = R⁻/Z1``), in its
*convolutions* over the negative ones ``Z2`` (``S1n = R⁻/Z2``); both kept (``Linear.RAP_relprop`` /
``Conv2d.RAP_relprop``). Relevance starts one-hot (1) on the target (``compute_pred``); the map is the signed channel
sum of the input relevance, which sums to the target logit (``main.py`` prints both). The code divides with
``safe_divide`` (0 where the denominator is 0); so do we.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import BadParameterError
from ..models.adapter import ModelAdapter
from ..types import Explanation, TargetLike
from ._core import check_int, explainer, finish
from .contrastive import classifier_layer
from .lrp import one_hot, propagate
from .propagation import Composite, Layer, Pass, Rule
from .propagation.composites import CONV_TYPES
from .propagation.rules import _leaf, _vjp


def safe_divide(a: Tensor, b: Tensor) -> Tensor:
    """``a / b`` where ``b ≠ 0``, else 0 (the released code's ``safe_divide``)."""
    nz = b != 0
    return torch.where(nz, a / torch.where(nz, b, torch.ones_like(b)), torch.zeros_like(a))


def _per_sample(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.ndim - 1)))


def shift_rel(c: Tensor, target_total: Tensor) -> Tensor:
    """Shift ``c`` uniformly over its non-zero entries so that each sample sums to ``target_total``."""
    nz = (c != 0).to(c.dtype)
    excess = c.flatten(1).sum(1) - target_total
    return c - _per_sample(safe_divide(excess, nz.flatten(1).sum(1)), c) * nz


@dataclass(repr=False)
class SafeNorm(Rule):
    """The z-rule ``R_i = x_i ∂z/∂x_i · R / z`` with 0/0 := 0 (RAP's ``RelPropSimple``); also splits residual sums."""

    name = "z"
    kind = "pool"

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        assert layer.call is not None
        xl = _leaf(x)
        z = layer.call(xl)
        (g,) = _vjp([z], [xl], [safe_divide(r, z.detach())])
        return x * g

    def split(self, inputs: list[Tensor], r: Tensor) -> list[Tensor]:
        s = safe_divide(r, sum(inputs[1:], inputs[0]))
        return [x * s for x in inputs]


@dataclass(repr=False)
class RAPHidden(Rule):
    """RAP's rule of a hidden dense or convolution layer (``pos_prop`` + ``shift_rel``); ``dense`` selects the
    dense-layer variant of the negative section (see the module docstring)."""

    dense: bool = False
    name = "rap"

    def _path(self, layer: Layer, x1: Tensor, w1: Tensor, w2: Tensor, sign: float, r: Tensor) -> Tensor:
        mask = (r != 0).to(r.dtype)
        xl = _leaf(x1)
        za1 = sign * layer.affine(xl, w1) * mask  # ≥ 0
        za2 = -sign * layer.affine(xl, w2) * mask  # ≥ 0
        z1, z2 = za1.detach(), za2.detach()
        d = z1 + z2
        on = (d != 0).to(r.dtype)
        rp, rn = r.clamp(min=0), r.clamp(max=0)
        s1 = safe_divide(rp * on, z1)
        s2 = safe_divide(rp * safe_divide(z2, d), z2)
        s2n = safe_divide(rn * safe_divide(z2, d), z2)
        if self.dense:
            (g1,) = _vjp([za1], [xl], [s1 + safe_divide(rn * on, z1)])
            (g2,) = _vjp([za2], [xl], [s2 + s2n])
        else:
            (g1,) = _vjp([za1], [xl], [s1])
            (g2,) = _vjp([za2], [xl], [s2 + s2n + safe_divide(rn * on, z2)])
        c = x1 * (g1 + g2)
        return shift_rel(c, r.flatten(1).sum(1))

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        assert layer.weight is not None
        w = layer.weight
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        out = self._path(layer, x.clamp(min=0), wp, wn, 1.0, r)
        if bool((x < 0).any()):
            out = out + self._path(layer, x.clamp(max=0), wp, wn, -1.0, r)  # −x⁻W⁺, x⁻W⁻
        return out


@dataclass(repr=False)
class RAPOutput(Rule):
    """RAP's output layer (``first_prop`` + ``redistribute``) for a one-hot (or any) start relevance ``r``."""

    name = "rap_output"

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        assert layer.weight is not None
        w, b = layer.weight, layer.bias
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        ins = [_leaf(xp), _leaf(xp), _leaf(xn), _leaf(xn)]
        zs = [layer.affine(ins[0], wp), layer.affine(ins[1], wn), layer.affine(ins[2], wp), layer.affine(ins[3], wn)]
        z1, z2, z3, z4 = (z.detach() for z in zs)
        dims = tuple(range(1, r.ndim))
        pos = ((z1 + z4) * r).sum(dims, keepdim=True)
        neg = ((z2 + z3) * r).sum(dims, keepdim=True)
        cots = [safe_divide(z1 * r, z1), safe_divide(z2 * r, z2), safe_divide(z3 * r, z3), safe_divide(z4 * r, z4)]
        if b is not None:
            bb = b.view(1, -1, *([1] * (r.ndim - 2))) * r
            cots[0] = cots[0] + safe_divide(bb * safe_divide(pos, pos + neg), z1)
            cots[1] = cots[1] + safe_divide(bb * safe_divide(neg, pos + neg), z2)
        gs = [_vjp([z], [i], [c])[0] for z, i, c in zip(zs, ins, cots, strict=True)]
        c = xp * (gs[0] + gs[1]) + xn * (gs[2] + gs[3])
        absc = c.abs()
        return absc * _per_sample(safe_divide(c.flatten(1).sum(1), absc.flatten(1).sum(1)), c)


@dataclass(repr=False)
class RAPInput(Rule):
    """z^B on the first convolution with ``L = min x``, ``H = max x`` per image (the code's ``final_backward``)."""

    name = "rap_zbox"

    def relevance(self, layer: Layer, x: Tensor, r: Tensor) -> Tensor:
        assert layer.weight is not None
        w = layer.weight
        flat = x.flatten(1)
        lo = _leaf(_per_sample(flat.amin(1), x).expand_as(x))
        hi = _leaf(_per_sample(flat.amax(1), x).expand_as(x))
        xl = _leaf(x)
        z0, z1, z2 = layer.affine(xl, w), layer.affine(lo, w.clamp(min=0)), layer.affine(hi, w.clamp(max=0))
        s = safe_divide(r, (z0 - z1 - z2).detach())
        g0, g1, g2 = _vjp([z0, z1, z2], [xl, lo, hi], [s, s, s])
        return x * g0 - lo.detach() * g1 - hi.detach() * g2


def rap_composite() -> Composite:
    """RAP's rules as a composite (the output layer is overridden by :class:`RAPOutput` at run time)."""
    hidden = {"conv": RAPHidden(dense=False), "dense": RAPHidden(dense=True)}
    z = SafeNorm()
    return Composite("rap", **hidden, first=RAPInput(), first_types=CONV_TYPES, pool=z, sum=z, maxpool=z,
                     activation=Pass(), batchnorm=Pass())  # fmt: skip


@explainer("rap", family="propagation", reduction="signed channel sum", reduce2d="sum")
def rap(model: ModelAdapter, x: Tensor, target: TargetLike = None, *, batch_size: int = 16) -> Explanation:
    """Relative Attributing Propagation (Nam et al., AAAI 2020): positive and negative relevance shared over both
    positive and negative contributions at every layer, shifted to conserve the total (see the module docstring).
    ``raw`` is the input relevance ``(N, 3, H, W)`` (summing to the target logit); the map its signed channel sum."""
    t0 = time.perf_counter()
    check_int("batch_size", batch_size)
    cls_name, cls = classifier_layer(model.module)
    comp = rap_composite()

    def starts(logits: Tensor, t: Tensor) -> list[Tensor]:
        return [one_hot(logits, t)]

    logits, t, (raw,) = propagate(model, x, target, comp, starts, batch_size, overrides={cls: RAPOutput()})
    if not torch.isfinite(raw).all():  # pragma: no cover - defensive
        raise BadParameterError("rap produced non-finite relevance")
    params = {"classifier_layer": cls_name, "batch_size": batch_size}
    return finish(model, "rap", raw.sum(1), raw, logits, t, params, None, t0)
