"""Build a TVM graph-executor JSON (the ``*.json`` of a DLR model directory).

The graph is a list of nodes in execution order: ``null`` nodes are model inputs or weights,
``tvm_op`` nodes call one exported kernel of the model's ``.so`` with the DLTensors of their
inputs followed by their output. Every node here has exactly one output, so node id and data
entry id coincide (``node_row_ptr`` is ``0..n``).

Storage is planned like TVM's ``GraphPlanMemory``: an op output may take over the storage id of
an intermediate tensor whose consumers have all run; the runtime allocates each storage id once,
at the largest size any tensor using it needs. Inputs, weights and graph outputs always get a
storage id of their own.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dtypes import check_dtype, dtype_of_array, numpy_dtype

log = logging.getLogger(__name__)

_C_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

NULL_OP = "null"
TVM_OP = "tvm_op"


@dataclass(frozen=True)
class Tensor:
    """A reference to the (single) output of one graph node."""

    node_id: int
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * numpy_dtype(self.dtype).itemsize


@dataclass
class _Node:
    kind: str  # "input" | "param" | "op"
    name: str
    shape: tuple[int, ...]
    dtype: str
    inputs: tuple[int, ...] = ()
    func_name: str = ""
    flatten_data: bool = False
    consumers: list[int] = field(default_factory=list)

    @property
    def op(self) -> str:
        return TVM_OP if self.kind == "op" else NULL_OP

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * numpy_dtype(self.dtype).itemsize


def _shape(shape: Iterable[int], what: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: shape {shape!r} is not a sequence of integers") from None
    if any(d < 1 for d in dims):
        raise ValueError(f"{what}: shape {dims} has a dimension below 1")
    return dims


class GraphBuilder:
    """Collects inputs, weights and kernel calls, and emits the TVM graph JSON."""

    def __init__(self) -> None:
        self._nodes: list[_Node] = []
        self._names: set[str] = set()
        self._params: dict[str, np.ndarray] = {}
        self._heads: list[int] = []

    # -- building ---------------------------------------------------------------------------
    def input(self, name: str, shape: Sequence[int], dtype: str = "float32") -> Tensor:
        """Declare a model input (a ``null`` node listed first in ``arg_nodes``)."""
        node = _Node("input", self._new_name(name), _shape(shape, name), check_dtype(dtype))
        return self._add(node)

    def param(self, name: str, value: np.ndarray) -> Tensor:
        """Declare a weight: a ``null`` node whose value is saved in the ``.params`` file."""
        array = np.ascontiguousarray(value)
        dtype = dtype_of_array(array)
        node = _Node("param", self._new_name(name), _shape(array.shape, name), dtype)
        self._params[node.name] = array
        return self._add(node)

    def op(
        self,
        name: str,
        func_name: str,
        inputs: Sequence[Tensor],
        shape: Sequence[int],
        dtype: str = "float32",
        *,
        flatten_data: bool = False,
    ) -> Tensor:
        """Call exported kernel ``func_name`` with ``(inputs..., output)``; return the output."""
        if not _C_IDENTIFIER.match(func_name or ""):
            raise ValueError(f"op {name}: kernel name {func_name!r} is not a C identifier")
        ids = tuple(self._check_tensor(t, name) for t in inputs)
        if not ids:
            raise ValueError(f"op {name}: a kernel call needs at least one input")
        node = _Node(
            "op",
            self._new_name(name),
            _shape(shape, name),
            check_dtype(dtype),
            inputs=ids,
            func_name=func_name,
            flatten_data=flatten_data,
        )
        tensor = self._add(node)
        for nid in ids:
            self._nodes[nid].consumers.append(tensor.node_id)
        return tensor

    def output(self, *tensors: Tensor) -> None:
        """Set the graph heads (the model outputs), in order."""
        if not tensors:
            raise ValueError("a graph needs at least one output")
        heads = []
        for t in tensors:
            nid = self._check_tensor(t, "output")
            if self._nodes[nid].kind != "op":
                raise ValueError(
                    f"output {self._nodes[nid].name} is an input or weight; outputs must be "
                    "op results"
                )
            if nid in heads:
                raise ValueError(f"output {self._nodes[nid].name} is listed twice")
            heads.append(nid)
        self._heads = heads

    # -- views --------------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, np.ndarray]:
        """The weights by name (the live dict: values may be replaced, names must stay)."""
        return self._params

    @property
    def inputs(self) -> list[Tensor]:
        """The declared model inputs, in declaration order."""
        return [self._tensor(i) for i, n in enumerate(self._nodes) if n.kind == "input"]

    @property
    def outputs(self) -> list[Tensor]:
        return [self._tensor(i) for i in self._heads]

    @property
    def func_names(self) -> list[str]:
        """Distinct kernel names the graph calls, in first-use order."""
        seen: dict[str, None] = {}
        for n in self._nodes:
            if n.kind == "op":
                seen.setdefault(n.func_name, None)
        return list(seen)

    def name_of(self, tensor: Tensor) -> str:
        return self._nodes[self._check_tensor(tensor, "name_of")].name

    # -- validation and emission --------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError if DLR would load this graph wrongly (or not at all)."""
        if not self._heads:
            raise ValueError("graph has no outputs: call output(...)")
        if not self.inputs:
            raise ValueError("graph has no inputs: declare at least one with input(...)")
        null_params = {n.name: n for n in self._nodes if n.kind == "param"}
        for name in self._params:
            if name not in null_params:
                raise ValueError(
                    f"param {name!r} matches no weight node; DLR would silently skip it"
                )
        for name, node in null_params.items():
            if name not in self._params:
                raise ValueError(
                    f"weight node {name!r} has no param; DLR would treat it as an "
                    "uninitialised input"
                )
            value = np.asarray(self._params[name])
            if tuple(value.shape) != node.shape or dtype_of_array(value) != node.dtype:
                raise ValueError(
                    f"param {name!r} is {dtype_of_array(value)}{list(value.shape)} but its "
                    f"node was declared {node.dtype}{list(node.shape)}"
                )

    def storage_ids(self) -> list[int]:
        """The planned storage id of every node output (see module docstring)."""
        return plan_storage(self._nodes, self._heads)

    def graph_json(self) -> dict[str, Any]:
        """The TVM graph JSON object (``json.dump`` it to write the model's graph file)."""
        self.validate()
        nodes: list[dict[str, Any]] = []
        for n in self._nodes:
            if n.kind == "op":
                nodes.append(
                    {
                        "op": TVM_OP,
                        "name": n.name,
                        "attrs": {
                            "func_name": n.func_name,
                            "num_inputs": str(len(n.inputs)),
                            "num_outputs": "1",
                            "flatten_data": "1" if n.flatten_data else "0",
                        },
                        "inputs": [[nid, 0, 0] for nid in n.inputs],
                    }
                )
            else:
                nodes.append({"op": NULL_OP, "name": n.name, "inputs": []})
        arg_nodes = [i for i, n in enumerate(self._nodes) if n.kind == "input"]
        arg_nodes += [i for i, n in enumerate(self._nodes) if n.kind == "param"]
        return {
            "nodes": nodes,
            "arg_nodes": arg_nodes,
            "node_row_ptr": list(range(len(self._nodes) + 1)),
            "heads": [[nid, 0, 0] for nid in self._heads],
            "attrs": {
                "dltype": ["list_str", [n.dtype for n in self._nodes]],
                "shape": ["list_shape", [list(n.shape) for n in self._nodes]],
                "storage_id": ["list_int", self.storage_ids()],
            },
        }

    # -- internals ----------------------------------------------------------------------------
    def _new_name(self, name: str) -> str:
        if not isinstance(name, str) or not name:
            raise ValueError(f"node names must be non-empty strings, got {name!r}")
        if name in self._names:
            raise ValueError(f"node name {name!r} is already used")
        self._names.add(name)
        return name

    def _add(self, node: _Node) -> Tensor:
        self._nodes.append(node)
        return self._tensor(len(self._nodes) - 1)

    def _tensor(self, nid: int) -> Tensor:
        n = self._nodes[nid]
        return Tensor(nid, n.shape, n.dtype)

    def _check_tensor(self, tensor: Tensor, where: str) -> int:
        nid = getattr(tensor, "node_id", None)
        if not isinstance(nid, int) or not 0 <= nid < len(self._nodes):
            raise ValueError(f"{where}: {tensor!r} is not a tensor of this graph")
        if self._tensor(nid) != tensor:
            raise ValueError(f"{where}: {tensor!r} does not match node {nid} of this graph")
        return nid


def plan_storage(nodes: Sequence[_Node], heads: Sequence[int]) -> list[int]:
    """Assign storage ids, reusing those of dead intermediate tensors (best fit by size)."""
    pinned = set(heads)
    last_use = {i: max(n.consumers) for i, n in enumerate(nodes) if n.consumers}
    storage: list[int] = []
    sizes: list[int] = []  # bytes per storage id so far
    free: list[int] = []  # storage ids of dead intermediates
    for i, node in enumerate(nodes):
        need = node.nbytes
        if node.kind == "op" and i not in pinned and free:
            fitting = [s for s in free if sizes[s] >= need]
            if fitting:
                sid = min(fitting, key=sizes.__getitem__)  # best fit
            else:
                sid = max(free, key=sizes.__getitem__)  # grow the largest free one
            free.remove(sid)
            sizes[sid] = max(sizes[sid], need)
        else:
            sid = len(sizes)
            sizes.append(need)
        storage.append(sid)
        if node.kind != "op":
            continue
        # Inputs whose last consumer is this op are dead now; the output was placed first, so
        # it never shares storage with its own inputs.
        for nid in set(node.inputs):
            if last_use[nid] == i and nodes[nid].kind == "op" and nid not in pinned:
                free.append(storage[nid])
        if not node.consumers and i not in pinned:
            free.append(sid)  # computed but never read
    log.debug("storage plan: %d tensors in %d storage ids", len(nodes), len(sizes))
    return storage
