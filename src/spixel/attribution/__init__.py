"""Pixel attribution methods. Each returns an :class:`~spixel.types.Explanation`; all are registered in
:data:`spixel.registry.METHODS` (``spixel list methods``)."""

from . import cam, gradients, guided  # noqa: F401  (registration)
from .cam import gradcam, gradcam_pp, scorecam
from .equilibrium import attribution_equilibrium
from .gad import gad  # the function shadows the submodule name; import helpers from spixel.attribution.gad
from .gradients import (
    input_x_gradient,
    integrated_gradients,
    saliency,
    smoothgrad,
    sparsified_smoothgrad,
)
from .guided import deconvolution, guided_backprop
from .perturbation import lime, occlusion, rise
from .swag import swag, swag_g, swag_ig  # the function shadows the submodule; import helpers from ...swag
from .xrai import xrai  # the function shadows the submodule name; import helpers from spixel.attribution.xrai

__all__ = [
    "attribution_equilibrium",
    "deconvolution",
    "gad",
    "gradcam",
    "gradcam_pp",
    "guided_backprop",
    "input_x_gradient",
    "integrated_gradients",
    "lime",
    "occlusion",
    "rise",
    "saliency",
    "scorecam",
    "smoothgrad",
    "sparsified_smoothgrad",
    "swag",
    "swag_g",
    "swag_ig",
    "xrai",
]
from . import lrp as _lrp  # noqa: F401  (registration: lrp, lrp_comp, clrp, sglrp)
from .lrp import clrp, lrp_comp, sglrp
from .lrp import lrp as lrp

__all__ += ["clrp", "lrp", "lrp_comp", "sglrp"]
from .baselines import centre_map, random_point_map  # noqa: E402

__all__ += ["centre_map", "random_point_map"]
from .contrastive import contrastive_eb  # noqa: E402

__all__ += ["contrastive_eb"]
from .relevance_cam import relevance_cam  # noqa: E402

__all__ += ["relevance_cam"]
from .rap import rap  # noqa: E402

__all__ += ["rap"]
