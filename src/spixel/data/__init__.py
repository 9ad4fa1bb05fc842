"""Bundled real photos with our own annotations (and, later, generated ground-truth datasets)."""

from .samples import Sample, sample, sample_names, samples

__all__ = ["Sample", "sample", "sample_names", "samples"]
