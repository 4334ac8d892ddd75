"""Write real DLR model directories without TVM.

A model directory is a TVM graph JSON (:mod:`.graph`), a ``.params`` file (:mod:`.params`), a
kernel library compiled with gcc from C sources against ``kernels/tvm_abi.h``
(:mod:`.compile`) and a Neo-style ``.meta`` (:mod:`.meta`); :func:`write_model_dir` writes all
four. :mod:`.testnets` builds the two small test networks the classifier's tests load.
"""

from __future__ import annotations

from .compile import KERNELS_DIR, KernelCompileError, compile_kernel_library
from .graph import GraphBuilder, Tensor
from .params import read_params, write_params
from .writer import ModelFiles, write_model_dir

__all__ = [
    "KERNELS_DIR",
    "GraphBuilder",
    "KernelCompileError",
    "ModelFiles",
    "Tensor",
    "compile_kernel_library",
    "read_params",
    "write_model_dir",
    "write_params",
]
