"""Peers for `emojicam bench`: the same TinyConvNet with the same weights, run the reference design's way (one
forward per grid row) and by other runtimes (onnxruntime, OpenCV's dnn, PyTorch on the CPU and on a CUDA GPU where
torch sees one). Each maps uint8 patches to emoji indices, so it can be timed against emojicam's upload + forward +
download."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tinygrad import Device, Tensor, TinyJit, dtypes
from tinygrad.nn.state import get_state_dict

from emojicam.model import TinyConvNet

Classify = Callable[[np.ndarray], np.ndarray]  # (N, 36, 36, 3) uint8 RGB patches -> (N,) emoji indices


@dataclass
class Peer:
    """One way to classify patches; `classify` is None when the peer is skipped, and `note` says why."""

    name: str
    device: str
    threads: str
    classify: Classify | None
    note: str = ""


def rowwise(model: TinyConvNet, device: str, cols: int) -> Classify:
    """The reference design: one forward pass per grid row, each row its own upload, call and download."""
    @TinyJit
    def row_forward(x: Tensor) -> Tensor:
        return model(x).argmax(1).cast(dtypes.int32).realize()

    def classify(patches: np.ndarray) -> np.ndarray:
        rows = [row_forward(Tensor(row, device=device).realize()).numpy() for row in patches.reshape(-1, cols,
                                                                                                    *patches.shape[1:])]
        Device[device].synchronize()
        return np.concatenate(rows)
    return classify


def onnx_graph(model: TinyConvNet):
    """TinyConvNet as an ONNX graph built from our weights: uint8 patches in, int64 argmax indices out."""
    from onnx import TensorProto, checker, helper, numpy_helper

    weights = {name: t.numpy().astype(np.float32) for name, t in get_state_dict(model).items()}
    inits = [numpy_helper.from_array(w, name) for name, w in weights.items()]
    inits += [numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
              numpy_helper.from_array(np.array(0.5, np.float32), "shift")]
    node = helper.make_node
    nodes = [node("Transpose", ["patches"], ["planes"], perm=[0, 3, 1, 2]),  # NCHW, as ONNX's Conv wants
             node("Cast", ["planes"], ["x"], to=TensorProto.FLOAT),
             node("Mul", ["x", "scale"], ["x_scaled"]), node("Sub", ["x_scaled", "shift"], ["x0"])]
    for i, conv in enumerate(("conv1", "conv2")):
        src = "x0" if i == 0 else "p0"
        nodes += [node("Conv", [src, f"{conv}.weight", f"{conv}.bias"], [f"c{i}"], kernel_shape=[3, 3]),
                  node("Relu", [f"c{i}"], [f"r{i}"]),
                  node("MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2])]
    nodes += [node("Flatten", ["p1"], ["features"], axis=1),
              node("Gemm", ["features", "fc.weight", "fc.bias"], ["logits"], transB=1),
              node("ArgMax", ["logits"], ["indices"], axis=1, keepdims=0)]
    size = model.config.patch_px
    graph = helper.make_graph(nodes, "tinyconvnet", [helper.make_tensor_value_info(
        "patches", TensorProto.UINT8, ["N", size, size, 3])], [helper.make_tensor_value_info(
        "indices", TensorProto.INT64, ["N"])], inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="emojicam")
    onnx_model.ir_version = 8  # readable by older onnxruntime and OpenCV builds
    checker.check_model(onnx_model)
    return onnx_model


def onnxruntime_peer(graph_bytes: bytes, threads: int) -> Peer:
    """onnxruntime on the CPU; threads=0 is its default (one per physical core)."""
    name = "onnxruntime" if threads == 0 else f"onnxruntime-{threads}t"
    try:
        import onnxruntime as ort
    except ImportError:
        return Peer(name, "CPU", "", None, "skipped: onnxruntime not installed (pip install 'emojicam[bench]')")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(graph_bytes, options, providers=["CPUExecutionProvider"])
    used = f"intra_op {threads}" if threads else f"intra_op default (0 = one per physical core; {os.cpu_count()} cpus)"
    return Peer(name, "CPU", used, lambda patches: session.run(None, {"patches": patches})[0], f"onnxruntime "
                f"{ort.__version__}")


def opencv_peer(graph_bytes: bytes) -> Peer:
    """OpenCV's dnn module reading the same ONNX graph."""
    import cv2

    try:
        net = cv2.dnn.readNetFromONNX(np.frombuffer(graph_bytes, np.uint8))
    except cv2.error as e:
        return Peer("cv2.dnn", "CPU", "", None, f"skipped: OpenCV {cv2.__version__} cannot read the graph: "
                    f"{str(e).strip().splitlines()[-1][:100]}")

    def classify(patches: np.ndarray) -> np.ndarray:
        net.setInput(patches)
        return net.forward().reshape(-1)
    return Peer("cv2.dnn", "CPU", f"cv2.getNumThreads() = {cv2.getNumThreads()}", classify, f"OpenCV {cv2.__version__}")


def torch_peer(model: TinyConvNet, device: str = "cpu") -> Peer:
    """PyTorch eager on the CPU, or on a CUDA GPU with cuDNN's autotuned convolutions; upload and download included,
    as in emojicam's own figure."""
    name, label = ("torch", "CPU") if device == "cpu" else (f"torch-{device}", device.upper())
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return Peer(name, label, "", None, "skipped: torch not installed")
    torch.backends.cudnn.benchmark = True  # the fastest convolution algorithm per shape, found on the first call
    w = {name: torch.from_numpy(t.numpy().astype(np.float32)).to(device) for name, t in get_state_dict(model).items()}

    @torch.inference_mode()
    def classify(patches: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(patches).to(device).permute(0, 3, 1, 2).float() * (1 / 255) - 0.5
        for conv in ("conv1", "conv2"):
            x = F.max_pool2d(F.relu(F.conv2d(x, w[f"{conv}.weight"], w[f"{conv}.bias"])), 2)
        return F.linear(x.flatten(1), w["fc.weight"], w["fc.bias"]).argmax(1).cpu().numpy()
    where = f"torch.get_num_threads() = {torch.get_num_threads()}" if device == "cpu" else \
        torch.cuda.get_device_name(device)
    return Peer(name, label, where, classify, f"torch {torch.__version__}")


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def runtime_peers(model: TinyConvNet) -> list[Peer]:
    """Other runtimes on the same network, built once for all grids: onnxruntime, cv2.dnn and torch on the host CPU,
    and torch on the GPU where torch sees a CUDA device."""
    try:
        graph_bytes = onnx_graph(model).SerializeToString()
    except ImportError:
        skipped = "skipped: onnx not installed (pip install 'emojicam[bench]')"
        ort_peers = [Peer("onnxruntime", "CPU", "", None, skipped), Peer("onnxruntime-1t", "CPU", "", None, skipped),
                     Peer("cv2.dnn", "CPU", "", None, skipped)]
    else:
        ort_peers = [onnxruntime_peer(graph_bytes, 0), onnxruntime_peer(graph_bytes, 1), opencv_peer(graph_bytes)]
    return [*ort_peers, torch_peer(model), *([torch_peer(model, "cuda")] if cuda_available() else [])]
