"""AE — Attribution Equilibrium (Nam & Lee, IEEE TPAMI 2024, arXiv 2205.11109; spec §5): sequential nets, ResNets.

Relevance starts at a convolutional layer (§5.1, paper eqs 5–7) as the per-channel gradient-weighted activation
``R = A ⊙ mean_ij(∂y_t/∂A)`` divided by ``|Σ R|`` (no channel sum, no ReLU), and is propagated back to the pixels
layer by layer (§5.2–5.3):

* hidden ``Conv2d`` — :func:`ae_conv_terms`: positive/negative sections normalised to +1/−1, the positive one
  scaled by ``ratio`` (eqs 8–9), the ``|W|``-rule on the input (eq 10), a uniform shift of −1 over the inputs that
  received relevance (eqs 14–15), the activated-neuron term (+1, eqs 11–12) and the inactive-neuron term (−1,
  eq 13); 1×1 kernels take the un-scaled, un-shifted branch of §5.2 item 7 [CODE];
* first ``Conv2d`` (the one that reads the image) — :func:`zb_rule`, the bounded z^B rule with ``L = min x``,
  ``H = max x`` of each normalised image [CODE];
* ``MaxPool2d``/``AvgPool2d``/``AdaptiveAvgPool2d`` (and ``AdaptiveMaxPool2d``) — :func:`pool_rule`, the z-rule on
  ``x⁺ + 1e-9`` [CODE]; ``BatchNorm2d`` — pass-through (zero where its input is 0) [CODE]; ``ReLU``/``Dropout`` —
  identity [CODE].

**Scope.** The leaves from the input to the target layer must form one chain (VGG-style: every leaf reads the
previous leaf's output, the first one reads the image) of the layer types above, in which a **residual block** of a
known class — torchvision's ``BasicBlock`` and ``Bottleneck``, spixel's :class:`~spixel.train.nets.BasicBlock`
(exact types) — counts as one link. A block is propagated as the released code does (§5.3 [CODE], see
:func:`residual_rule`): the shortcut/``downsample`` is discarded and the relevance goes through the residual branch
only (bn2 → conv2 → ReLU → bn1 → conv1, a ``Bottleneck`` starting at bn3 → conv3), halved before and doubled
after. Anything else — ReLU6, SiLU, grouped/depthwise convolutions, other residual additions, concatenations,
operations done outside ``nn.Module`` s — is refused with a :class:`~spixel.errors.BadParameterError`. The
``residual="add_split"`` variant of §5.3 is not implemented. In-place tensor methods called inside ``forward``
(``x.relu_()``) cannot be seen.

**Conservation** (§5.4 unit checks). Per hidden conv ``Σ C1 = r − 1``, ``Σ A = 1``, ``Σ B = −1`` and the layer's
output total is ``r − 2`` — exactly, as long as no denominator vanishes: ``Z_k = Σ_j x_j |w_jk|`` for an output
with relevance, ``Z_a,k`` (some active input in the receptive field) for positive ``R_k``, ``Z_n,k`` (some
inactive input) for negative ``R_k``. A vanishing denominator drops that share (0/0 := 0, spec guard; the released
code would give NaN). Zero padding does not break the sums: padded positions are neither active nor inactive
inputs and enter no denominator. The z^B rule and the pool rules conserve, so a VGG map sums to ``r − 2``.
A residual block's output relevance sums to twice its first branch conv's: ``2(r − 2)`` for a ``BasicBlock`` (3×3),
0 for a ``Bottleneck`` (1×1, §5.2 item 7), whatever the incoming total (the conv rule renormalises its sections);
so a map of a ``BasicBlock`` ResNet (ResNet-18, spixel's SmallResNet) sums to ``2(r − 2)``, of a ResNet-50 to 0 —
again only without vanishing denominators: torchvision's ``layer1.0.conv1`` reads the max-pool output, which can
lack inactive inputs (a random-weight ResNet-18 at 224 px gave −0.43 instead of −1 for ``r = 1.5``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import BadParameterError
from ..models.adapter import ModelAdapter
from ..types import Explanation, TargetLike, resolve_targets
from ._core import check_float, check_int, explainer, finish
from .cam import resolve_layer

#: Stabiliser of the pool z-rule (§5.3, released code): the rule runs on ``x⁺ + POOL_EPS``.
POOL_EPS = 1e-9

_PASS = (nn.ReLU, nn.Dropout, nn.Dropout2d, nn.Identity)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_KNOWN = (*_PASS, *_POOLS, nn.BatchNorm2d, nn.Conv2d)
_SCOPE = "AE supports sequential ReLU networks (VGG-style) and ResNets of known residual blocks"


@cache
def _residual_blocks() -> dict[type[nn.Module], str]:
    """The residual block classes with an AE rule (§5.3 [CODE]), each with the name of its shortcut submodule."""
    from torchvision.models.resnet import BasicBlock as TVBasic
    from torchvision.models.resnet import Bottleneck as TVBottleneck

    from ..train.nets import BasicBlock

    return {TVBasic: "downsample", TVBottleneck: "downsample", BasicBlock: "shortcut"}


class AETerms(NamedTuple):
    """The parts of the hidden-conv rule (§5.2), each shaped like the conv input ``(N, C, H, W)``.

    ``c1``: the ``|W|``-rule of ``r·R⁺ + R⁻`` (eq 10); ``shifted``: ``c1`` after the uniform shift (eqs 14–15);
    ``active``: ``A`` (eqs 11–12); ``inactive``: ``B`` (eq 13). For 1×1 kernels (§5.2 item 7) ``c1`` uses the
    un-scaled sections and ``shifted is c1``.
    """

    c1: Tensor
    shifted: Tensor
    active: Tensor
    inactive: Tensor

    @property
    def total(self) -> Tensor:
        """The relevance of the conv input: ``shifted + active + inactive`` (§5.2 item 6)."""
        return self.shifted + self.active + self.inactive


# ------------------------------------------------------------------------------------------ helpers
def _per_sample(v: Tensor) -> Tensor:
    """``(N,) → (N, 1, 1, 1)``."""
    return v.view(-1, *([1] * 3))


def _div0(a: Tensor, b: Tensor) -> Tensor:
    """``a / b`` with ``x / 0 := 0`` (spec §5.2: 0/0 := 0; a share whose denominator vanishes is dropped)."""
    zero = b == 0
    return torch.where(zero, torch.zeros_like(a), a / torch.where(zero, torch.ones_like(b), b))


def sections(relevance: Tensor) -> tuple[Tensor, Tensor]:
    """``(R⁺, R⁻)`` of eqs 8–9 per sample: ``max(R,0)/Σmax(R,0)`` (sums to 1) and ``min(R,0)/|Σmin(R,0)|``
    (sums to −1); an empty section stays all zeros (spec guard)."""
    pos = relevance.clamp(min=0)
    neg = relevance.clamp(max=0)
    sp = _per_sample(pos.flatten(1).sum(1))
    sn = _per_sample(neg.flatten(1).sum(1).abs())
    return _div0(pos, sp), _div0(neg, sn)


def _check_conv(conv: nn.Conv2d) -> None:
    if conv.groups != 1:
        raise BadParameterError(f"{_SCOPE}; a grouped or depthwise convolution (groups={conv.groups}) has no AE rule")
    if conv.padding_mode != "zeros":
        raise BadParameterError(f"{_SCOPE}; a convolution with padding_mode={conv.padding_mode!r} has no AE rule")


def _conv(z: Tensor, weight: Tensor, conv: nn.Conv2d) -> Tensor:
    """``conv`` with another weight, no bias, the layer's stride, padding (zeros) and dilation."""
    return F.conv2d(z, weight, None, conv.stride, conv.padding, conv.dilation)


def _input_x_vjp(
    inp: Tensor, weight: Tensor, conv: nn.Conv2d, scale_of_z: Callable[[Tensor], Tensor]
) -> tuple[Tensor, Tensor]:
    """``(Z, inp ⊙ convᵀ(S, weight))`` with ``Z = conv(inp, weight)`` and ``S = scale_of_z(Z)``; the transposed
    convolution is the vector–Jacobian product of the (linear) convolution, so stride, padding, dilation and
    the input size are honoured exactly."""
    with torch.enable_grad():
        leaf = inp.detach().requires_grad_(True)
        z = _conv(leaf, weight, conv)
        s = scale_of_z(z.detach())
        (g,) = torch.autograd.grad(z, leaf, s)
    return z.detach(), inp * g


# ------------------------------------------------------------------------------------------ layer rules
def initial_relevance(activation: Tensor, gradient: Tensor) -> Tensor:
    """Start of the propagation (§5.1, eqs 5–7): ``R = A ⊙ mean_ij G`` per channel (no channel sum, no ReLU),
    divided by ``|Σ R|`` per sample (left unscaled where that sum is 0 [RECON guard])."""
    r = activation * gradient.mean(dim=(2, 3), keepdim=True)
    s = _per_sample(r.flatten(1).sum(1).abs())
    return r / torch.where(s == 0, torch.ones_like(s), s)


def ae_conv_terms(x: Tensor, relevance: Tensor, conv: nn.Conv2d, ratio: float = 2.0) -> AETerms:
    """The AE rule of a hidden convolution (§5.2, eqs 8–15), split into its terms.

    ``x``: the conv input ``(N, C, H, W)`` (≥ 0 after a ReLU or pool); ``relevance``: on the conv output.
    Bias is ignored. With ``R⁺, R⁻`` from :func:`sections`, ``Z = conv(x, |W|)``:
    ``C1 = x ⊙ convᵀ((r·R⁺ + R⁻) / Z, |W|)``; ``shifted = C1 − 1[C1 ≠ 0] / #{C1 ≠ 0}``;
    ``A = a ⊙ convᵀ(R⁺ / conv(a, |W|), |W|)`` with ``a = 1[x > 0]``;
    ``B = n ⊙ convᵀ(R⁻ / conv(n, |W|), |W|)`` with ``n = 1[x ≤ 0]``; all sums per sample, 0/0 := 0.
    1×1 kernels (§5.2 item 7): ``r = 1`` and no shift.
    """
    _check_conv(conv)
    ratio = check_float("ratio", ratio, lo=1.0, hi=2.0)
    one_by_one = tuple(conv.kernel_size) == (1, 1)
    r_pos, r_neg = sections(relevance)
    target = (1.0 if one_by_one else ratio) * r_pos + r_neg
    act = (x > 0).to(x.dtype)
    n = x.shape[0]
    # the three |W|-rules share one convolution and one transposed convolution (rows: C1, A, B)
    inp = torch.cat([x, act, 1.0 - act])
    num = torch.cat([target, r_pos, r_neg])
    _, out = _input_x_vjp(inp, conv.weight.detach().abs().to(x.dtype), conv, lambda z: _div0(num, z))
    c1, active, inactive = out[:n], out[n : 2 * n], out[2 * n :]
    if one_by_one:
        return AETerms(c1, c1, active, inactive)
    nz = (c1 != 0).to(x.dtype)
    count = _per_sample(nz.flatten(1).sum(1))
    shifted = c1 - _div0(nz, count)
    return AETerms(c1, shifted, active, inactive)


def ae_conv_rule(x: Tensor, relevance: Tensor, conv: nn.Conv2d, ratio: float = 2.0) -> Tensor:
    """Relevance of a hidden conv's input: ``C1_shift + A + B`` (§5.2 item 6; see :func:`ae_conv_terms`)."""
    return ae_conv_terms(x, relevance, conv, ratio).total


def zb_rule(x: Tensor, relevance: Tensor, conv: nn.Conv2d) -> Tensor:
    """The bounded z^B rule of the first convolution (§5.3 [CODE]), bias ignored.

    ``L = min x``, ``H = max x`` per sample over the whole normalised image; ``Z = conv(x, W) − conv(L, W⁺) −
    conv(H, W⁻)`` (the constant images are zero-padded like ``x``), ``S = R / Z`` (0/0 := 0),
    ``R_in = x ⊙ convᵀ(S, W) − L ⊙ convᵀ(S, W⁺) − H ⊙ convᵀ(S, W⁻)``. Conserves ``Σ R`` where ``Z ≠ 0``.
    """
    _check_conv(conv)
    w = conv.weight.detach().to(x.dtype)
    flat = x.flatten(1)
    low = _per_sample(flat.amin(1)).expand_as(x)
    high = _per_sample(flat.amax(1)).expand_as(x)
    # one convolution of [x, L, H] with [W, −W⁺, −W⁻]: its input ⊙ gradient is the three terms
    inp = torch.cat([x, low, high], dim=1)
    weight = torch.cat([w, -w.clamp(min=0), -w.clamp(max=0)], dim=1)
    _, out = _input_x_vjp(inp, weight, conv, lambda z: _div0(relevance, z))
    c = x.shape[1]
    return out[:, :c] + out[:, c : 2 * c] + out[:, 2 * c :]


def pool_rule(x: Tensor, relevance: Tensor, pool: nn.Module) -> Tensor:
    """z-rule of a pooling layer on ``x' = x⁺ + 1e-9`` (§5.3 [CODE]): ``R_in = x' ⊙ ∂Z/∂x' · (R / Z)`` with
    ``Z = pool(x')``. Max pooling sends all of a window's relevance to its arg-max; average pooling shares it in
    proportion to ``x'``. Conserves ``Σ R``."""
    with torch.enable_grad():
        xp = (x.detach().clamp(min=0) + POOL_EPS).requires_grad_(True)
        z = pool(xp)
        if isinstance(z, tuple):  # return_indices=True
            z = z[0]
        (g,) = torch.autograd.grad(z, xp, relevance / z.detach())
    return xp.detach() * g


def batchnorm_rule(x: Tensor, relevance: Tensor) -> Tensor:
    """BatchNorm2d (§5.3 [CODE]): pass-through, zero where the BN input is 0."""
    return torch.where(x != 0, relevance, torch.zeros_like(relevance))


# ------------------------------------------------------------------------------------------ the chain
class _Step(NamedTuple):
    name: str
    module: nn.Module
    x: Tensor | None  # the recorded input (layers whose rule needs it)
    branch: tuple[_Step, ...] = ()  # a residual block: its residual branch's leaves in execution order


def _type_name(m: nn.Module) -> str:
    return type(m).__name__


def forward_chain(
    module: nn.Module, layer_name: str, layer: nn.Module, x: Tensor
) -> tuple[Tensor, list[_Step], Tensor]:
    """One forward of ``x`` that records the leaf modules up to ``layer`` in execution order with their inputs.

    A residual block of a known class (see the module docstring) is one step whose ``branch`` holds the leaves of
    its residual branch (everything but the shortcut) in the order they ran, with their inputs; its internals are
    not checked as a chain (the shortcut reads the block input, torchvision reuses one ReLU).
    Returns ``(logits, steps, A)`` where ``A`` is the layer output as a leaf that requires grad (the network
    continues from a clone of it, so ``∂ logits / ∂ A`` is one ``autograd.grad`` away). Refuses
    (:class:`BadParameterError`) a leaf type without an AE rule, a leaf or block run twice, a leaf or block that
    does not read the previous one's output (the first must read ``x``), a target layer inside a block and a layer
    whose output is not its last step's output. Hooks are always removed.
    """
    kinds = _residual_blocks()
    steps: list[_Step] = []
    seen: set[str] = set()
    state: dict[str, Any] = {"prev": x, "prev_name": "the model input", "act": None, "block": None, "branch": []}

    def check_link(name: str, what: str, inp: tuple[Any, ...]) -> None:
        if name in seen:
            raise BadParameterError(f"{_SCOPE}; {what} {name!r} runs more than once per forward pass")
        seen.add(name)
        if not inp or inp[0] is not state["prev"]:
            raise BadParameterError(
                f"{_SCOPE}; {what} {name!r} does not read the output of {state['prev_name']!r} (a residual "
                "addition of an unknown block, a concatenation or an operation outside nn.Modules)"
            )

    def leaf_step(name: str, m: nn.Module, inp: tuple[Any, ...]) -> _Step:
        if type(m) not in _KNOWN:
            raise BadParameterError(
                f"{_SCOPE}; layer {name!r} ({_type_name(m)}) before the target layer has no AE rule"
            )
        if isinstance(m, nn.Conv2d):
            _check_conv(m)
        return _Step(name, m, None if isinstance(m, _PASS) else inp[0].detach().clone())

    def pre(name: str):
        def hook(m: nn.Module, inp: tuple[Any, ...]) -> None:
            if state["act"] is None:
                check_link(name, "layer", inp)
                steps.append(leaf_step(name, m, inp))

        return hook

    def post(name: str):
        def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
            if state["act"] is None:
                state["prev"], state["prev_name"] = out, name

        return hook

    def inner_pre(name: str, block: str, in_branch: bool):
        def hook(m: nn.Module, inp: tuple[Any, ...]) -> None:
            if state["act"] is not None:
                return
            if state["block"] != block:
                raise BadParameterError(f"{_SCOPE}; layer {name!r} runs outside its residual block {block!r}")
            if in_branch:
                state["branch"].append(leaf_step(name, m, inp))

        return hook

    def block_pre(name: str):
        def hook(_m: nn.Module, inp: tuple[Any, ...]) -> None:
            if state["act"] is None:
                check_link(name, "residual block", inp)
                state["block"], state["branch"] = name, []

        return hook

    def block_post(name: str):
        def hook(m: nn.Module, _inp: Any, out: Any) -> None:
            if state["act"] is None:
                steps.append(_Step(name, m, None, tuple(state["branch"])))
                state["prev"], state["prev_name"], state["block"] = out, name, None

        return hook

    def at_layer(_m: nn.Module, _inp: Any, out: Any) -> Tensor:
        if state["act"] is not None:
            raise BadParameterError(f"layer {layer_name!r} runs more than once per forward pass; choose another")
        if not isinstance(out, Tensor) or out.ndim != 4:
            raise BadParameterError(f"AE needs a target layer with a (N, C, h, w) output; {layer_name!r} is not")
        if state["block"] is not None:
            raise BadParameterError(
                f"{_SCOPE}; the target layer {layer_name!r} lies inside the residual block {state['block']!r}: "
                "choose the block or a layer outside it"
            )
        if out is not state["prev"]:
            raise BadParameterError(
                f"{_SCOPE}; the output of {layer_name!r} is not the output of its last layer {state['prev_name']!r}"
            )
        a = out.detach().requires_grad_(True)
        state["act"] = a
        return a.clone()

    blocks: dict[str, str] = {}  # recognised block name -> prefix of its shortcut's names
    named = list(module.named_modules())
    for name, m in named:
        inside = any(name.startswith(f"{b}.") or not b for b in blocks)
        if type(m) in kinds and not inside:
            blocks[name] = f"{name}.{kinds[type(m)]}" if name else kinds[type(m)]
    handles = []
    try:
        for name, m in named:
            if name in blocks:
                handles.append(m.register_forward_pre_hook(block_pre(name)))
                handles.append(m.register_forward_hook(block_post(name)))
            elif name and next(m.children(), None) is None:
                block = next((b for b in blocks if not b or name.startswith(f"{b}.")), None)
                if block is None:
                    handles.append(m.register_forward_pre_hook(pre(name)))
                    handles.append(m.register_forward_hook(post(name)))
                else:
                    sc = blocks[block]
                    on_branch = not (name == sc or name.startswith(f"{sc}."))
                    handles.append(m.register_forward_pre_hook(inner_pre(name, block, on_branch)))
        handles.append(layer.register_forward_hook(at_layer))
        with torch.enable_grad():
            logits = module(x)
    finally:
        for h in handles:
            h.remove()
    if state["act"] is None:
        raise BadParameterError(f"layer {layer_name!r} did not run during the forward pass")
    if next(_convs(steps), None) is None:
        raise BadParameterError(f"AE needs a convolution before the target layer {layer_name!r}")
    return logits, steps, state["act"]


def _convs(steps: list[_Step] | tuple[_Step, ...]) -> Iterator[_Step]:
    """The convolution steps in execution order, residual branches included."""
    for s in steps:
        if s.branch:
            yield from _convs(s.branch)
        elif isinstance(s.module, nn.Conv2d):
            yield s


def _propagate(steps: list[_Step] | tuple[_Step, ...], r: Tensor, ratio: float, image_conv: _Step | None) -> Tensor:
    for s in reversed(steps):
        m, x = s.module, s.x
        if s.branch:
            r = _residual(s, r, ratio, image_conv)
        elif isinstance(m, _PASS):
            continue
        elif isinstance(m, nn.BatchNorm2d):
            assert x is not None
            r = batchnorm_rule(x, r)
        elif isinstance(m, _POOLS):
            assert x is not None
            r = pool_rule(x, r, m)
        elif isinstance(m, nn.Conv2d):
            assert x is not None
            r = zb_rule(x, r, m) if s is image_conv else ae_conv_rule(x, r, m, ratio)
    return r


def _residual(step: _Step, r: Tensor, ratio: float, image_conv: _Step | None) -> Tensor:
    return 2 * _propagate(step.branch, r / 2, ratio, image_conv)


def residual_rule(step: _Step, relevance: Tensor, ratio: float = 2.0) -> Tensor:
    """Relevance of a residual block's input (§5.3 [CODE], the released code's default): ``relevance / 2`` goes
    back through the residual branch's leaves (``step.branch``, as recorded by :func:`forward_chain`) with the
    per-layer rules, the shortcut/``downsample`` gets nothing, and the result is doubled. The halving changes
    nothing (the branch's last layer is a BN before a conv, whose rule renormalises its sections), the doubling
    does: the block's output totals twice its first conv's (``2(r − 2)`` for a 3×3, 0 for a 1×1 kernel)."""
    return _residual(step, relevance, ratio, None)


def propagate(steps: list[_Step], relevance: Tensor, ratio: float) -> Tensor:
    """Relevance of the chain's input from the relevance of its output, the §5.2–5.3 rules in reverse order; the
    first convolution (the one that reads the image) takes the z^B rule."""
    return _propagate(steps, relevance, ratio, next(_convs(steps)))


@explainer("attribution_equilibrium", family="propagation", reduction="signed channel sum", reduce2d="sum")
def attribution_equilibrium(
    model: ModelAdapter,
    x: Tensor,
    target: TargetLike = None,
    *,
    ratio: float = 2.0,
    layer: str | None = None,
    batch_size: int = 16,
) -> Explanation:
    """Attribution Equilibrium (Nam & Lee, TPAMI 2024; spec §5) for VGG-style ReLU networks and ResNets.

    ``layer``: where the propagation starts — a role or module name, by default the adapter's ``"cam"`` role
    (as Grad-CAM; VGG-16: ``features.29``, ResNets: ``layer4``; a residual block or a stage of blocks may be the
    target, a layer inside a block may not). ``ratio`` ∈ [1, 2]: the weight ``r`` of the positive section
    (eq 9; the released ImageNet script uses 2). ``batch_size`` bounds the images per forward/propagation.
    ``raw`` is the input relevance ``(N, 3, H, W)``; the map is its signed channel sum (total ≈ ``r − 2``; with
    ``BasicBlock`` s ``2(r − 2)``, with ``Bottleneck`` s 0). Residual blocks of torchvision's ``BasicBlock``/
    ``Bottleneck`` and spixel's ``BasicBlock`` take the released code's rule (§5.3 [CODE]): the relevance flows
    only through the residual branch, the shortcut is discarded. Other residual connections and layers without an
    AE rule are refused (see the module docstring).
    """
    t0 = time.perf_counter()
    ratio = check_float("ratio", ratio, lo=1.0, hi=2.0)
    check_int("batch_size", batch_size)
    name, mod = resolve_layer(model, layer, x)
    raws, all_logits = [], []
    t: Tensor | None = None
    for s in range(0, x.shape[0], batch_size):
        xc = x[s : s + batch_size]
        logits, steps, act = forward_chain(model.module, name, mod, xc)
        if logits.ndim != 2:
            raise BadParameterError(f"the model must return logits of shape (N, K), got {tuple(logits.shape)}")
        if t is None and target is not None:
            t = resolve_targets(target, x.shape[0], logits.shape[1]).to(x.device)
        ti = t[s : s + batch_size] if t is not None else logits.detach().argmax(1)
        (g,) = torch.autograd.grad(logits.gather(1, ti.view(-1, 1)).sum(), act, allow_unused=True)
        if g is None:
            raise BadParameterError(f"layer {name!r} does not influence the model's output")
        with torch.no_grad():
            raws.append(propagate(steps, initial_relevance(act.detach(), g), ratio))
        all_logits.append(logits.detach())
        del steps, act
    logits = torch.cat(all_logits)
    if t is None:
        t = resolve_targets(None, x.shape[0], logits.shape[1], predicted=logits.argmax(1)).to(x.device)
    raw = torch.cat(raws)
    params = {"ratio": ratio, "layer": name, "batch_size": batch_size}
    return finish(model, "attribution_equilibrium", raw.sum(1), raw, logits, t, params, None, t0)
