"""Op self times from TensorFlow's profiler trace (``*.xplane.pb``), read with the
protobuf module TensorFlow ships (no profiler plugin needed), and the dtypes the traced
step's convolution, batchnorm and matmul nodes compute in; used by
``benchmarks.op_profile``."""

import collections

# Ops that only run other ops (their time is the nested ops' time).
_CONTAINERS = {"While", "StatelessWhile", "If", "StatelessIf", "PartitionedCall",
               "StatefulPartitionedCall", "Case", "StatelessCase"}


def family(op_type):
    if "Conv2D" in op_type:
        return "convolution"
    if "BatchNorm" in op_type:
        return "batchnorm"
    return "other"


def op_self_times(xplane_path):
    """``{op type: [count, self seconds]}`` over the executor threads of the host plane."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    space = xplane_pb2.XSpace()
    with open(xplane_path, "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.defaultdict(lambda: [0, 0.0])
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = plane.event_metadata
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            # Op events are named "<op name>:<op type>" and carry the type as their
            # display name (the executor's own events carry none); events nest (a loop's
            # body ops inside the loop op), so an op's self time is its duration minus
            # its children's.
            ops = sorted(((e.offset_ps, e.offset_ps + e.duration_ps,
                           names[e.metadata_id].display_name)
                          for e in line.events if names[e.metadata_id].display_name),
                         key=lambda t: (t[0], -t[1]))
            stack = []  # open ops: [end, op type, children's time, duration]
            for start, end, op_type in ops:
                while stack and stack[-1][0] <= start:
                    _close(stack, totals)
                if stack:
                    stack[-1][2] += end - start
                stack.append([end, op_type, 0, end - start])
            while stack:
                _close(stack, totals)
    return {k: v for k, v in totals.items() if k not in _CONTAINERS}


def _close(stack, totals):
    end, op_type, children, duration = stack.pop()
    totals[op_type][0] += 1
    totals[op_type][1] += max(duration - children, 0) / 1e12


# Op types whose dtype the census reports, by family (families as ``family``, plus matmul).
CENSUS_FAMILIES = ("convolution", "batchnorm", "matmul")


def census_family(op_type):
    """The census family of an op type (``None``: not counted)."""
    if "MatMul" in op_type:
        return "matmul"
    name = family(op_type)
    return name if name != "other" else None


def dtype_census(graph_def):
    """How many nodes of each counted op type compute in each dtype.

    Walks the graph and every function of its library (loop bodies and conditions,
    gradient functions, nested ``tf.function`` calls), so a loop body is counted once
    however many times it runs, and a gradient function's nodes count whether or not the
    runtime prunes them (an input-gradient loop's unused filter gradients): the counts
    are of nodes, the dtypes are what matters.  A node's dtype is its ``T`` attribute (for the fused
    BatchNorm ops the data's, ``U`` being the float32 statistics').  ``Cast`` nodes are
    counted by ``"<source>-><destination>"``.

    Args:
        graph_def: a ``tf.compat.v1.GraphDef``, e.g.
            ``tf.function(fn).get_concrete_function(...).graph.as_graph_def()``.

    Returns:
        ``{op type: {dtype name: nodes}}`` for the convolution, batchnorm and matmul op
        types (``census_family``) and ``Cast``.
    """
    from tensorflow.python.framework import dtypes
    census = collections.defaultdict(collections.Counter)
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    for node in nodes:
        if node.op == "Cast":
            source, destination = (dtypes.as_dtype(node.attr[a].type).name
                                   for a in ("SrcT", "DstT"))
            census["Cast"][f"{source}->{destination}"] += 1
        elif census_family(node.op) and "T" in node.attr:
            census[node.op][dtypes.as_dtype(node.attr["T"].type).name] += 1
    return {op: dict(counts) for op, counts in census.items()}
