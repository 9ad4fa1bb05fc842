"""Bundled real photos with our own annotations, and a generated dataset with exact ground truth."""

from .samples import Sample, sample, sample_names, samples
from .synthetic import SyntheticDataset, SyntheticSample

__all__ = ["Sample", "SyntheticDataset", "SyntheticSample", "sample", "sample_names", "samples"]
