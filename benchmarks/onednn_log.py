"""oneDNN's verbose lines (``ONEDNN_VERBOSE=1``) read into kernels and summed per
convolution; used by ``benchmarks.onednn_kernels``."""

import collections
import re

BEGIN, END = "=== onednn_kernels: step begins ===", "=== onednn_kernels: step ends ==="
Kernel = collections.namedtuple("Kernel", "kind impl prop problem ms")


def parse_verbose(text):
    """``(step seconds, [Kernel])`` from a side's output: the oneDNN ``exec`` lines
    between the markers, and the step time printed after them."""
    if BEGIN not in text or END not in text:
        raise ValueError("no step markers in the side's output (did it fail?)")
    body = text.split(BEGIN, 1)[1].split(END, 1)
    seconds = float(re.search(r"step_seconds=([0-9.eE+-]+)", body[1]).group(1))
    kernels = []
    for line in body[0].splitlines():
        fields = line.split(",")
        if not line.startswith("onednn_verbose") or "exec" not in fields:
            continue
        # ...,exec,engine,kind,implementation,pass,memory,attributes,auxiliary,problem,ms
        i = fields.index("exec")
        kernels.append(Kernel(fields[i + 2], fields[i + 3], fields[i + 4], fields[-2],
                              float(fields[-1])))
    return seconds, kernels


def conv_key(problem):
    """``(minibatch, key)``: a convolution problem without its minibatch and padding
    (``ic64 oc128 k3 s2 -> 16x16``)."""
    d = {name: int(value) for name, value in re.findall(r"([a-z]+)(\d+)", problem)}
    return d["mb"], (f"ic{d['ic']} oc{d['oc']} k{d['kh']}x{d['kw']} s{d['sh']} "
                     f"-> {d['oh']}x{d['ow']}")


def per_image(kernels):
    """``{(pass, conv key): [images, ms]}`` over the convolution kernels."""
    out = collections.defaultdict(lambda: [0, 0.0])
    for k in kernels:
        if k.kind != "convolution":
            continue
        mb, key = conv_key(k.problem)
        out[(k.prop, key)][0] += mb
        out[(k.prop, key)][1] += k.ms
    return dict(out)


def priced_at(ours, theirs):
    """tf_st's convolution milliseconds if each of its convolution images took the
    official side's time per image for the same convolution and pass (its own where
    the official side never runs that one)."""
    total = 0.0
    for key, (images, ms) in ours.items():
        if key in theirs:
            total += images * theirs[key][1] / theirs[key][0]
        else:
            total += ms
    return total
