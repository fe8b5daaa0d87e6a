"""Op self times from TensorFlow's profiler trace (``*.xplane.pb``), read with the
protobuf module TensorFlow ships (no profiler plugin needed); used by
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
