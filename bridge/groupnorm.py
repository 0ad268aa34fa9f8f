"""Fuse GroupNormalization in a tf2onnx graph into onnxruntime's InstanceNormalization kernel.

tf2onnx turns each Keras `GroupNormalization` into ~20 primitive ops (Reshape, two ReduceMean, Sub, Mul, Sqrt,
Reciprocal, ... plus a Shape/Gather/Concat chain for the dynamic batch), which onnxruntime runs one by one: about
40 % of the decoder's CPU time (docs/bench/bridge.md). Group normalisation is instance normalisation over
(N, groups, -1), so each layer's subgraph is replaced by

    NHWC x -> Transpose NCHW -> Reshape (N, G, -1) -> InstanceNormalization(eps) -> Reshape (N, C, H, W)
           -> * gamma + beta (per channel) -> Transpose NHWC -> y

and onnxruntime's layout optimiser cancels the transposes against those tf2onnx put around the convolutions.
A layer's subgraph is found by its name scope (tf2onnx keeps the Keras layer name in every tensor name); a
layer whose subgraph does not have the expected shape is left as it was. The caller checks parity afterwards.

This module needs only onnx and numpy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass(frozen=True)
class GroupNormSpec:
    """One Keras GroupNormalization layer: its name, groups, epsilon and per-channel gamma/beta [C]."""

    name: str
    groups: int
    epsilon: float
    gamma: np.ndarray
    beta: np.ndarray


def fuse_group_norms(model: onnx.ModelProto, norms: list[GroupNormSpec]) -> list[str]:
    """Rewrite `model` in place; returns the names of the layers that were fused."""
    fused = [spec.name for spec in norms if _fuse_one(model.graph, spec)]
    if fused:
        _remove_dead_nodes(model.graph)
    return fused


def _fuse_one(graph: onnx.GraphProto, spec: GroupNormSpec) -> bool:
    scope = re.compile(rf"/{re.escape(spec.name)}(_\d+)?/")
    nodes = [n for n in graph.node if any(scope.search(o) for o in n.output)]
    if not nodes:
        return False
    produced = {o for n in nodes for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in graph.output}
    # The data input: a Reshape of an outside tensor into (N, H, W, G, C/G) whose output feeds a ReduceMean.
    entry = [n for n in nodes if n.op_type == "Reshape" and n.input[0] not in produced
             and any(c.op_type == "ReduceMean" for c in consumers.get(n.output[0], []))]
    exits = sorted({o for o in produced if o in graph_outputs
                    or any(c.output[0] not in produced for c in consumers.get(o, []))})
    if len(entry) != 1 or len(exits) != 1 or not _is_nhwc_grouping(graph, entry[0], spec):
        return False
    x, y = entry[0].input[0], exits[0]
    channels = len(spec.gamma)
    prefix = f"{spec.name}_fused"
    consts = {
        f"{prefix}/grouped_shape": np.array([0, spec.groups, -1], dtype=np.int64),
        f"{prefix}/ones": np.ones(spec.groups, dtype=np.float32),
        f"{prefix}/zeros": np.zeros(spec.groups, dtype=np.float32),
        f"{prefix}/gamma": np.asarray(spec.gamma, dtype=np.float32).reshape(channels, 1, 1),
        f"{prefix}/beta": np.asarray(spec.beta, dtype=np.float32).reshape(channels, 1, 1),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    new_nodes = [
        helper.make_node("Transpose", [x], [f"{prefix}/nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Shape", [f"{prefix}/nchw"], [f"{prefix}/nchw_shape"]),
        helper.make_node("Reshape", [f"{prefix}/nchw", f"{prefix}/grouped_shape"], [f"{prefix}/grouped"]),
        helper.make_node("InstanceNormalization", [f"{prefix}/grouped", f"{prefix}/ones", f"{prefix}/zeros"],
                         [f"{prefix}/normed"], epsilon=float(spec.epsilon)),
        helper.make_node("Reshape", [f"{prefix}/normed", f"{prefix}/nchw_shape"], [f"{prefix}/normed_nchw"]),
        helper.make_node("Mul", [f"{prefix}/normed_nchw", f"{prefix}/gamma"], [f"{prefix}/scaled"]),
        helper.make_node("Add", [f"{prefix}/scaled", f"{prefix}/beta"], [f"{prefix}/shifted"]),
        helper.make_node("Transpose", [f"{prefix}/shifted"], [y], perm=[0, 2, 3, 1]),
    ]
    # x is produced before the entry Reshape and y read after the old subgraph: the new nodes go where it was.
    old = list(graph.node)
    at = next(i for i, n in enumerate(old) if n.output[0] == entry[0].output[0])
    before = [n for n in old[:at] if n.output[0] not in produced]
    after = [n for n in old[at:] if n.output[0] not in produced]
    del graph.node[:]
    graph.node.extend(before + new_nodes + after)
    return True


def _is_nhwc_grouping(graph: onnx.GraphProto, reshape: onnx.NodeProto, spec: GroupNormSpec) -> bool:
    """The entry Reshape's constant target shape ends in (groups, channels / groups): the NHWC grouping."""
    init = {t.name: t for t in graph.initializer}
    if reshape.input[1] not in init:
        return False
    shape = numpy_helper.to_array(init[reshape.input[1]]).tolist()
    return len(shape) == 5 and shape[-2:] == [spec.groups, len(spec.gamma) // spec.groups]


def _remove_dead_nodes(graph: onnx.GraphProto) -> None:
    """Drop nodes whose outputs nobody reads (the old subgraphs' shape chains), then unused initializers."""
    needed = {o.name for o in graph.output}
    alive = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            alive.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(alive))
    used = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(used)
