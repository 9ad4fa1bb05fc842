"""Bundled real photos with our own annotations, and a generated dataset with exact ground truth."""

from .samples import Sample, sample, sample_names, samples
from .synthetic import SyntheticDataset, SyntheticSample

__all__ = ["Sample", "SyntheticDataset", "SyntheticSample", "sample", "sample_names", "samples"]

from .annotations import (  # the --data forms: importing registers them in DATASETS
    read_csv_boxes,
    read_mask,
    read_voc_xml,
    resolve_label,
    wordnet_id,
    wordnet_index,
)
from .datasets import SpixelDataset, open_dataset
from .items import Item

__all__ += [
    "Item",
    "SpixelDataset",
    "open_dataset",
    "read_csv_boxes",
    "read_mask",
    "read_voc_xml",
    "resolve_label",
    "wordnet_id",
    "wordnet_index",
]
