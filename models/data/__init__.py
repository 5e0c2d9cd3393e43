"""Datasets, augmentation and loaders of the training and evaluation commands."""
from .datasets import ADE20K, Cityscapes, COCOStuff10k, FolderDataset, SegmentationDataset, build_dataset
from .io import DataError
from .loader import AugmentedDataset, IterationBatchSampler, build_eval_loader, build_train_loader
from .synthetic import SyntheticSegmentation
from .transforms import build_train_transform

__all__ = ["ADE20K", "AugmentedDataset", "COCOStuff10k", "Cityscapes", "DataError", "FolderDataset",
           "IterationBatchSampler", "SegmentationDataset", "SyntheticSegmentation", "build_dataset",
           "build_eval_loader", "build_train_loader", "build_train_transform"]
