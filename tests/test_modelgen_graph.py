"""Graph JSON structure, validation and storage planning of ggic.modelgen.graph."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ggic.modelgen import GraphBuilder, Tensor


def _small_graph() -> tuple[GraphBuilder, dict[str, Tensor]]:
    g = GraphBuilder()
    w = g.param("w", np.ones((2, 3), np.float32))  # declared before the input on purpose
    x = g.input("x", (2, 3))
    k = g.input("k", (1,), "int32")
    a = g.op("a", "ggic_k_add", [x, w], (2, 3))
    b = g.op("b", "ggic_k_scale", [a, k], (2, 3))
    g.output(b)
    return g, {"w": w, "x": x, "k": k, "a": a, "b": b}


def test_graph_json_has_exactly_the_tvm_keys_and_layout() -> None:
    g, t = _small_graph()
    obj = g.graph_json()
    json.dumps(obj)  # serialisable as is
    assert set(obj) == {"nodes", "arg_nodes", "node_row_ptr", "heads", "attrs"}
    names = [n["name"] for n in obj["nodes"]]
    assert names == ["w", "x", "k", "a", "b"]
    # real inputs first in arg_nodes (declaration order), then weights
    assert obj["arg_nodes"] == [t["x"].node_id, t["k"].node_id, t["w"].node_id]
    assert obj["node_row_ptr"] == [0, 1, 2, 3, 4, 5]
    assert obj["heads"] == [[t["b"].node_id, 0, 0]]
    assert set(obj["attrs"]) == {"dltype", "shape", "storage_id"}
    assert obj["attrs"]["dltype"] == [
        "list_str",
        ["float32", "float32", "int32", "float32", "float32"],
    ]
    assert obj["attrs"]["shape"] == ["list_shape", [[2, 3], [2, 3], [1], [2, 3], [2, 3]]]
    assert obj["attrs"]["storage_id"][0] == "list_int"
    assert len(obj["attrs"]["storage_id"][1]) == 5


def test_null_nodes_have_no_attrs_and_ops_have_four_string_attrs() -> None:
    g, t = _small_graph()
    nodes = g.graph_json()["nodes"]
    for node in nodes[:3]:
        assert node == {"op": "null", "name": node["name"], "inputs": []}
    b = nodes[t["b"].node_id]
    assert b["op"] == "tvm_op"
    assert b["attrs"] == {
        "func_name": "ggic_k_scale",
        "num_inputs": "2",
        "num_outputs": "1",
        "flatten_data": "0",
    }
    assert all(isinstance(v, str) for v in b["attrs"].values())
    assert b["inputs"] == [[t["a"].node_id, 0, 0], [t["k"].node_id, 0, 0]]


def test_views_list_inputs_outputs_and_kernels() -> None:
    g, t = _small_graph()
    assert g.inputs == [t["x"], t["k"]]
    assert g.outputs == [t["b"]]
    assert g.func_names == ["ggic_k_add", "ggic_k_scale"]
    assert set(g.params) == {"w"}
    assert g.name_of(t["a"]) == "a"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda g, x: g.input("x", (1,)), "already used"),
        (lambda g, x: g.input("y", (0, 3)), "below 1"),
        (lambda g, x: g.input("y", (2,), "float8"), "unsupported dtype"),
        (lambda g, x: g.op("o", "not a name", [x], (1,)), "C identifier"),
        (lambda g, x: g.op("o", "ggic_k", [], (1,)), "at least one input"),
        (lambda g, x: g.op("o", "ggic_k", [Tensor(99, (1,), "float32")], (1,)), "not a tensor"),
        (lambda g, x: g.op("o", "ggic_k", [Tensor(0, (9,), "float32")], (1,)), "does not match"),
        (lambda g, x: g.output(x), "input or weight"),
        (lambda g, x: g.output(), "at least one output"),
        (lambda g, x: g.param("p", np.zeros(2, dtype=complex)), "unsupported"),
    ],
)
def test_building_mistakes_are_refused(build, message: str) -> None:
    g = GraphBuilder()
    x = g.input("x", (2,))
    with pytest.raises(ValueError, match=message):
        build(g, x)


def test_an_output_listed_twice_is_refused() -> None:
    g, t = _small_graph()
    with pytest.raises(ValueError, match="twice"):
        g.output(t["b"], t["b"])


def test_graph_without_outputs_is_refused() -> None:
    g = GraphBuilder()
    g.op("a", "ggic_k", [g.input("x", (1,))], (1,))
    with pytest.raises(ValueError, match="no outputs"):
        g.graph_json()


def test_param_without_weight_node_is_refused() -> None:
    g, _ = _small_graph()
    g.params["stray"] = np.zeros(1, np.float32)
    with pytest.raises(ValueError, match="matches no weight node"):
        g.graph_json()


def test_weight_node_without_param_is_refused() -> None:
    g, _ = _small_graph()
    del g.params["w"]
    with pytest.raises(ValueError, match="uninitialised input"):
        g.graph_json()


def test_replaced_param_must_keep_shape_and_dtype() -> None:
    g, _ = _small_graph()
    g.params["w"] = np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match="declared float32"):
        g.graph_json()
    g.params["w"] = np.ones((2, 3), np.float64)
    with pytest.raises(ValueError, match="declared float32"):
        g.graph_json()
    g.params["w"] = np.full((2, 3), 7, np.float32)  # same shape and dtype: fine
    g.graph_json()


# -- storage planning --------------------------------------------------------------------------
def _live_ranges(obj: dict) -> dict[int, tuple[int, int]]:
    """Node id -> (first, last) node index during which its output must stay intact."""
    heads = {h[0] for h in obj["heads"]}
    nodes = obj["nodes"]
    end = len(nodes)
    ranges = {}
    for i, node in enumerate(nodes):
        users = [j for j, n in enumerate(nodes) if any(e[0] == i for e in n["inputs"])]
        last = max(users, default=i)
        if node["op"] == "null" or i in heads:
            ranges[i] = (0, end)  # inputs/weights/outputs: whole run and beyond
        else:
            ranges[i] = (i, last)
    return ranges


def _assert_plan_is_safe(obj: dict) -> None:
    sids = obj["attrs"]["storage_id"][1]
    ranges = _live_ranges(obj)
    for i in ranges:
        for j in ranges:
            if i < j and sids[i] == sids[j]:
                (a0, a1), (b0, b1) = ranges[i], ranges[j]
                assert a1 < b0 or b1 < a0, f"nodes {i} and {j} share storage while both live"
    pinned = set(obj["arg_nodes"]) | {h[0] for h in obj["heads"]}
    for i in pinned:
        assert sids.count(sids[i]) == 1, f"pinned node {i} shares its storage"


def _chain(n: int, head_every: int = 0) -> GraphBuilder:
    g = GraphBuilder()
    t = g.input("x", (4,))
    w = g.param("w", np.ones(4, np.float32))
    outs = []
    for i in range(n):
        t = g.op(f"op{i}", "ggic_k", [t, w], (4 * (i % 3 + 1),))
        if head_every and i % head_every == 0:
            outs.append(t)
    g.output(*outs, *([t] if t not in outs else []))
    return g


def test_chain_reuses_dead_storage() -> None:
    g = _chain(6)
    sids = g.graph_json()["attrs"]["storage_id"][1]
    # x, w, then op0..op5: op2 may take op0's storage (dead once op1 ran), op3 op1's, ...
    assert sids == [0, 1, 2, 3, 2, 3, 2, 4]
    _assert_plan_is_safe(g.graph_json())


@pytest.mark.parametrize(("n", "head_every"), [(1, 0), (5, 2), (9, 3), (12, 1)])
def test_plans_never_alias_live_tensors_or_pinned_ones(n: int, head_every: int) -> None:
    _assert_plan_is_safe(_chain(n, head_every).graph_json())


def test_diamond_keeps_a_tensor_alive_until_its_last_consumer() -> None:
    g = GraphBuilder()
    x = g.input("x", (8,))
    a = g.op("a", "ggic_k", [x], (8,))
    b = g.op("b", "ggic_k", [a], (8,))
    c = g.op("c", "ggic_k", [b], (8,))
    d = g.op("d", "ggic_k", [a, c], (8,))  # a is still needed here
    e = g.op("e", "ggic_k", [d], (8,))
    g.output(e)
    obj = g.graph_json()
    sids = obj["attrs"]["storage_id"][1]
    assert sids[c.node_id] != sids[a.node_id]
    assert sids[c.node_id] not in (sids[x.node_id], sids[b.node_id])
    assert len(set(sids)) < len(sids)  # some reuse happened
    _assert_plan_is_safe(obj)


def test_unused_op_result_storage_is_reused() -> None:
    g = GraphBuilder()
    x = g.input("x", (8,))
    dead = g.op("dead", "ggic_k", [x], (8,))
    live = g.op("live", "ggic_k", [x], (8,))
    out = g.op("out", "ggic_k", [live], (8,))
    g.output(out)
    sids = g.storage_ids()
    assert sids[live.node_id] == sids[dead.node_id]
    _assert_plan_is_safe(g.graph_json())
