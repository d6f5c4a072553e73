"""SIMS's non-parametric half (Qi, Chen, Jia, Koltun, CVPR 2018): the memory bank of training segments.

One module per step of the paper's Figure 2:

* ``segments.py``: a label map's segments (connected regions of a class) and their grids;
* ``bank.py``: the memory bank, built from a dataset (``semsynth sims index``), one safetensors file;
* ``ordering.py``: the depth order of the classes (which one goes in front where segments overlap);
* ``retrieval.py``: for each segment of a new layout, the best-fitting bank segment (shape IoU + context);
* ``canvas.py``: the retrieved segments composed into the canvas the synthesis network refines
  (``models/generators/sims.py``).
"""

from .bank import BANK_FILENAME, BankError, MemoryBank, build_bank, load_bank
from .canvas import compose, compose_canvas
from .ordering import depth_order, parse_order
from .retrieval import Query, query_segments, retrieve
from .segments import Segments, find_segments

__all__ = ["BANK_FILENAME", "BankError", "MemoryBank", "Query", "Segments", "build_bank", "compose",
           "compose_canvas", "depth_order", "find_segments", "load_bank", "parse_order", "query_segments",
           "retrieve"]
