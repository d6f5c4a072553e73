"""Evaluation metrics: FID and KID (pytorch-fid's Inception), LPIPS (the ``lpips`` package), and mIoU / pixel
accuracy from a segmenter's predictions. Pretrained weights are read from a given path or the torch hub cache,
never downloaded. The protocol is in docs/evaluation.md."""

from .fid import (
    BLOCK_INDEX_BY_DIM,
    FeatureAccumulator,
    InceptionFeatures,
    build_fid_inception,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    images_to_uint8,
    load_statistics,
    save_statistics,
)
from .kid import kid_from_features, polynomial_kernel
from .lpips_metric import LPIPS_NETS, LPIPSMetric
from .segmentation import IGNORE_LABEL, SegmentationScore, map_labels, resize_labels
from .weights import FID_INCEPTION, LPIPS_BACKBONES, WeightsFile, find_weights, hub_checkpoint_dir

__all__ = [
    "BLOCK_INDEX_BY_DIM", "FID_INCEPTION", "IGNORE_LABEL", "LPIPS_BACKBONES", "LPIPS_NETS",
    "FeatureAccumulator", "InceptionFeatures", "LPIPSMetric", "SegmentationScore", "WeightsFile",
    "build_fid_inception", "feature_statistics", "fid_from_features", "find_weights", "frechet_distance",
    "hub_checkpoint_dir", "images_to_uint8", "kid_from_features", "load_statistics", "map_labels",
    "polynomial_kernel", "resize_labels", "save_statistics",
]
