"""Building blocks, one concept per file. Layers take plain arguments, never a config object."""

from .functional import instance_edges, one_hot_label, semantic_input
from .init import init_weights
from .norm import SyncableBatchNorm2d, convert_sync_batchnorm, param_free_norm
from .position import IterativeGaussian
from .routing import apply_mapping, channel_pool
from .scc import SpatiallyConditionalConv2d, scc_reference
from .scn import SpatiallyConditionalNorm2d
from .spade import SPADE, SPADEResBlock
from .spectral import StackedSpectralNorm, spectral_norm

__all__ = [
    "SPADE", "SPADEResBlock", "IterativeGaussian", "SpatiallyConditionalConv2d", "SpatiallyConditionalNorm2d",
    "StackedSpectralNorm",
    "SyncableBatchNorm2d", "apply_mapping", "channel_pool", "convert_sync_batchnorm", "init_weights",
    "instance_edges", "one_hot_label", "param_free_norm", "scc_reference", "semantic_input", "spectral_norm",
]
