"""Data: the bundled real photos with our own annotations."""

from .samples import Sample, sample, sample_names, samples

__all__ = ["Sample", "sample", "sample_names", "samples"]
