"""The propagation engine: a composite's rules run as the backward pass of the model's own autograd graph.

Within a :class:`Propagator` context every leaf module with a rule has its ``forward`` shadowed by an instance
attribute that computes the module's ordinary output inside a custom autograd function (:class:`_Apply`), whose
backward is the rule: autograd then carries *relevance* instead of gradients, batched, on any device, through any
topology whose joins are modules or routing operations (views, flatten, ``cat``/``stack``, slicing). Residual
additions written in ``forward`` methods are routed through :meth:`Propagator.add` by the canonizers
(:mod:`.canonizers`). On exit every attribute is deleted again: the model is left exactly as found (same modules,
same forwards, no hooks, parameters untouched).

Nothing is ever silently wrong: a leaf module without a rule in the composite, a convolution subclass with a
forward of its own, or a module that reads the result of an operation done outside modules (a functional
``x + y``, ``x * s``, ``F.relu``…) raises :class:`~spixel.errors.BadParameterError` naming the layer, while the
forward pass runs.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import BadParameterError
from .canonizers import batchnorm_merges, merged_parameters, residual_forward
from .composites import BATCHNORM_TYPES, LINEAR_TYPES, Composite
from .rules import Layer, Norm, Rule

__all__ = ["TRANSPARENT", "Propagator"]

#: leaves that are the identity (or a reshape) in eval mode: left alone, relevance passes as their gradient
TRANSPARENT: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Flatten,
    nn.Unflatten,
)
_TRANSPARENT_NAMES = {"DropPath"}  # timm

#: autograd nodes of operations that only route values (their gradient conserves or drops, never mixes relevance)
_ROUTING = frozenset(
    {
        "ViewBackward0",
        "UnsafeViewBackward0",
        "ReshapeAliasBackward0",
        "CatBackward0",
        "StackBackward0",
        "SplitBackward0",
        "SplitWithSizesBackward0",
        "UnbindBackward0",
        "SelectBackward0",
        "SliceBackward0",
        "PermuteBackward0",
        "TransposeBackward0",
        "TBackward0",
        "CloneBackward0",
        "SqueezeBackward0",
        "SqueezeBackward1",
        "SqueezeBackward2",
        "UnsqueezeBackward0",
        "AliasBackward0",
        "ToCopyBackward0",
    }
)


@dataclass(eq=False)
class Binding:
    """One module bound to its rule for the duration of a :class:`Propagator`."""

    name: str
    module: nn.Module
    rule: Rule
    layer: Layer
    run: Callable[[Tensor], Tensor]
    after: Binding | None = None  # a merged batch-norm: the linear layer whose output it must read
    last: Tensor | None = None


class _Apply(torch.autograd.Function):
    """Forward: the module's own output. Backward: the rule's relevance of the module input."""

    @staticmethod
    def forward(ctx: Any, binding: Binding, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.binding = binding
        if binding.rule.needs_input:
            ctx.save_for_backward(x)
        y = binding.run(x)
        return y.clone() if y is x else y

    @staticmethod
    def backward(ctx: Any, r: Tensor) -> tuple[None, Tensor]:  # type: ignore[override]
        b: Binding = ctx.binding
        x = ctx.saved_tensors[0] if b.rule.needs_input else r
        with torch.enable_grad():
            out = b.rule.relevance(b.layer, x.detach(), r)
        return None, out


class _Sum(torch.autograd.Function):
    """Forward: ``a + b``. Backward: the composite's ``sum`` rule splits the relevance between ``a`` and ``b``."""

    @staticmethod
    def forward(ctx: Any, rule: Norm, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        ctx.rule = rule
        ctx.save_for_backward(a, b)
        return a + b

    @staticmethod
    def backward(ctx: Any, r: Tensor) -> tuple[None, Tensor, Tensor]:  # type: ignore[override]
        a, b = ctx.saved_tensors
        ra, rb = ctx.rule.split([a, b], r)
        return None, ra, rb


def _type(m: nn.Module) -> str:
    return type(m).__name__


def _linear_fn(name: str, m: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    """``f(x, w)``: the layer ``m`` with weight ``w`` and no bias, exactly as its forward computes it."""
    if isinstance(m, nn.Linear) and type(m).forward is nn.Linear.forward:
        return lambda x, w: F.linear(x, w)
    for base in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
        if isinstance(m, base) and type(m).forward is base.forward:
            return lambda x, w: m._conv_forward(x, w, None)  # type: ignore[operator]
    if _type(m) == "Conv2dSame":  # timm's TF "same" padding (EfficientNet-Lite)
        from timm.layers.conv2d_same import conv2d_same

        return lambda x, w: conv2d_same(x, w, None, m.stride, m.padding, m.dilation, m.groups)
    raise BadParameterError(
        f"layer {name!r} ({_type(m)}) is a {type(m).__mro__[1].__name__} with a forward of its own; "
        "the propagation rules cannot evaluate it with modified weights"
    )


def _non_inplace(m: nn.Module, fwd: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if getattr(m, "inplace", False):
        return lambda x: fwd(x.clone())
    return fwd


class Propagator:
    """Context manager: bind ``composite``'s rules to ``module`` (and canonize it when ``canonize``: residual blocks
    split; batch-norm merged into the preceding layer unless ``merge_batchnorm=False``, then it takes its own rule).

    ``with Propagator(model, composite) as p: logits, relevance = p.relevance(x, start)`` — see
    :meth:`relevance`. Used by every method of the LRP family; the model must be in eval mode (the explainers run
    it inside :func:`spixel.models.state.frozen`).
    """

    def __init__(
        self, module: nn.Module, composite: Composite, canonize: bool = True, merge_batchnorm: bool = True
    ) -> None:
        self.module = module
        self.composite = composite
        self.canonize = canonize
        self.merge_batchnorm = merge_batchnorm
        self.bindings: dict[nn.Module, Binding] = {}
        self._patched: list[tuple[nn.Module, bool, Any]] = []
        self._ok: set[int] = set()
        self.first: str | None = None

    # ------------------------------------------------------------------------------------------ attach / detach
    def _patch(self, m: nn.Module, fwd: Callable[..., Tensor]) -> None:
        had = "forward" in m.__dict__
        self._patched.append((m, had, m.__dict__.get("forward")))
        m.forward = fwd  # type: ignore[method-assign]

    def __enter__(self) -> Propagator:
        try:
            self._attach()
        except BaseException:
            self._detach()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._detach()

    def _detach(self) -> None:
        for m, had, old in reversed(self._patched):
            if had:
                m.forward = old  # type: ignore[method-assign]
            else:
                del m.forward
        self._patched.clear()
        for b in self.bindings.values():
            b.last = None
        self._ok.clear()

    def _attach(self) -> None:
        c = self.composite
        merges = batchnorm_merges(self.module) if self.canonize and self.merge_batchnorm else {}
        merged_into = {lin: bn for bn, lin in merges.items()}
        first_taken = False
        for name, m in self.module.named_modules():
            block = residual_forward(m) if self.canonize else None
            if block is not None:
                if isinstance(m, BATCHNORM_TYPES):  # BatchNormAct2d: its batch-norm step gets a binding
                    self.bindings[m] = self._bind_batchnorm(name, m, merges, bn_call=True)
                self._patch(m, functools.partial(block, self, m))
                continue
            if next(m.children(), None) is not None or not name:
                continue
            if isinstance(m, TRANSPARENT) or _type(m) in _TRANSPARENT_NAMES:
                continue
            rule = c.rule_for(m, not first_taken)
            if rule is None:
                self._patch(m, functools.partial(self._no_rule, name, m))
                continue
            if c.first is not None and rule is c.first and not first_taken:
                first_taken = True
                self.first = name
            if isinstance(m, BATCHNORM_TYPES):
                b = self._bind_batchnorm(name, m, merges, bn_call=False)
            elif isinstance(m, LINEAR_TYPES):
                if m in merged_into:
                    w, bias = merged_parameters(m, merged_into[m])
                else:
                    w = m.weight.detach()
                    bias = m.bias.detach() if m.bias is not None else None
                b = Binding(name, m, rule, Layer(m, _linear_fn(name, m), w, bias), m.forward)
            else:
                b = Binding(name, m, rule, Layer(m, call=_non_inplace(m, m.forward)), _non_inplace(m, m.forward))
            self.bindings[m] = b
            self._patch(m, functools.partial(self._forward, b))
        # a merged batch-norm must read its linear layer's output
        for bn, lin in merges.items():
            if bn in self.bindings and lin in self.bindings:
                self.bindings[bn].after = self.bindings[lin]

    def _bind_batchnorm(self, name: str, m: nn.Module, merges: dict[nn.Module, nn.Module], bn_call: bool) -> Binding:
        rule = self.composite.batchnorm
        if bn_call:  # the batch-norm step of a fused module, eval statistics

            def run(x: Tensor) -> Tensor:
                return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

        else:
            run = m.forward
        return Binding(name, m, rule, Layer(m, call=run), run)

    # ------------------------------------------------------------------------------------------ forward side
    def _no_rule(self, name: str, m: nn.Module, *args: Any, **kwargs: Any) -> Tensor:
        raise BadParameterError(
            f"layer {name!r} ({_type(m)}) has no rule in the {self.composite.name!r} composite; "
            "the propagation methods support convolutions (any groups), dense layers, pooling, batch-norm and "
            "element-wise activations"
        )

    def _check(self, where: str, tensors: Iterable[Any]) -> None:
        """Refuse an input computed by an operation outside modules (anything but routing ops)."""
        stack = [t.grad_fn for t in tensors if isinstance(t, Tensor) and t.grad_fn is not None]
        while stack:
            node = stack.pop()
            if node is None or id(node) in self._ok:
                continue
            if getattr(node, "_forward_cls", None) in (_Apply, _Sum):
                self._ok.add(id(node))
                continue
            kind = type(node).__name__
            if kind == "AccumulateGrad":
                continue
            if kind not in _ROUTING:
                raise BadParameterError(
                    f"{where} reads the result of an operation outside nn.Modules ({kind.removesuffix('Backward0')}"
                    ", e.g. a residual addition or a functional activation in a forward method) which no "
                    "relevance rule covers; known residual blocks: torchvision BasicBlock/Bottleneck, spixel "
                    "BasicBlock, timm InvertedResidual/DepthwiseSeparableConv"
                )
            self._ok.add(id(node))
            stack.extend(n for n, _ in node.next_functions)

    def _forward(self, b: Binding, *args: Any, **kwargs: Any) -> Tensor:
        if len(args) != 1 or kwargs or not isinstance(args[0], Tensor):
            raise BadParameterError(f"layer {b.name!r} ({_type(b.module)}) is called with other than one tensor")
        x = args[0]
        self._check(f"layer {b.name!r}", (x,))
        if b.after is not None and x is not b.after.last:
            raise BadParameterError(
                f"batch-norm {b.name!r} follows {b.after.name!r} in module order but does not read its output; "
                "it cannot be merged (canonize=False propagates through it unmerged)"
            )
        y = _Apply.apply(b, x)
        b.last = y
        return y

    @contextlib.contextmanager
    def override(self, module: nn.Module, rule: Rule) -> Iterator[None]:
        """Within the context, the backward pass uses ``rule`` for ``module`` (bound layers only); the graph of
        an earlier forward pass is reused (rules are read when the backward pass runs)."""
        if module not in self.bindings:
            raise BadParameterError(f"{_type(module)} has no rule binding to override")
        b = self.bindings[module]
        if rule.needs_input and not b.rule.needs_input:
            raise BadParameterError(f"{b.name!r}: its rule did not keep the layer input; cannot override it")
        old, b.rule = b.rule, rule
        try:
            yield
        finally:
            b.rule = old

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        """A residual addition ``a + b`` whose relevance the composite's ``sum`` rule splits."""
        self._check("a residual addition", (a, b))
        return _Sum.apply(self.composite.sum, a, b)

    def batchnorm(self, m: nn.Module, x: Tensor) -> Tensor:
        """The batch-norm step of a fused module (timm ``BatchNormAct2d``)."""
        return self._forward(self.bindings[m], x)

    # ------------------------------------------------------------------------------------------ running
    def forward(self, x: Tensor, at: Sequence[nn.Module] = ()) -> tuple[Tensor, Tensor, list[Tensor]]:
        """One forward pass of ``x``: ``(logits, x_leaf, outputs of the modules in at)`` (autograd on)."""
        self._ok.clear()
        store: dict[int, Tensor] = {}
        handles = []
        try:
            for i, m in enumerate(at):

                def hook(_m: nn.Module, _i: Any, out: Any, i: int = i) -> None:
                    if not isinstance(out, Tensor):
                        raise BadParameterError(f"layer {_type(_m)} does not output one tensor")
                    store[i] = out

                handles.append(m.register_forward_hook(hook))
            xl = x.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = self.module(xl)
        finally:
            for h in handles:
                h.remove()
        if not isinstance(logits, Tensor):
            raise BadParameterError("the model must return one tensor of logits")
        self._check("the model output", (logits,))
        missing = [i for i in range(len(at)) if i not in store]
        if missing:
            raise BadParameterError(f"layer {_type(at[missing[0]])} did not run during the forward pass")
        return logits, xl, [store[i] for i in range(len(at))]

    @staticmethod
    def backward(logits: Tensor, inputs: Sequence[Tensor], start: Tensor, retain: bool = False) -> list[Tensor]:
        """Relevance of ``inputs`` (model input and/or recorded layer outputs) from ``start`` on the logits;
        ``retain`` keeps the graph for another backward pass."""
        try:
            grads = torch.autograd.grad(logits, list(inputs), start, allow_unused=True, retain_graph=retain)
        except RuntimeError as e:
            if "inplace" in str(e):
                raise BadParameterError(
                    "a tensor the propagation rules need was modified in place during the forward pass "
                    f"({str(e).splitlines()[0][:160]})"
                ) from None
            raise
        return [torch.zeros_like(i) if g is None else g for i, g in zip(inputs, grads, strict=True)]

    def relevance(self, x: Tensor, start: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        """``(logits, R)``: ``R`` the relevance of ``x`` when the logits carry ``start(logits)``."""
        logits, xl, _ = self.forward(x)
        r0 = start(logits.detach())
        (r,) = self.backward(logits, [xl], r0)
        return logits.detach(), r
