"""TinyConvNet: two 3x3 convolutions and one linear layer, in tinygrad; FLOPs and safetensors I/O."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tinygrad import Device, Tensor, dtypes, nn
from tinygrad.nn.state import get_state_dict, inverse_safe_dtypes

from emojicam.atomic import write_atomic
from emojicam.errors import EmojicamError
from emojicam.grid import PATCH_PX
from emojicam.resources import shipped

DEFAULT_WEIGHTS = shipped("weights", "default.safetensors")


def auto_model(on_cpu: bool, real_time: bool) -> str:
    """`--model auto`: the fast (18 px) network on CPU devices where real time matters (live: 2.5x the 36 px one's
    frames per second on 2 cores), else the 36 px network (GPUs have time for it; a photo or a video file is worth
    the better picture)."""
    return "fast" if on_cpu and real_time else "default"


def shipped_weights(set_name: str = "default", model_name: str = "default") -> Path:
    """The shipped weights of a shipped set (emoji_set.SETS) and model: weights/default.safetensors, fast.,
    full., full-fast.; a one-line EmojicamError when that pair is not shipped."""
    stem = "-".join(name for name in (set_name, model_name) if name != "default") or "default"
    path = shipped("weights", f"{stem}.safetensors")
    if not path.is_file():
        have = sorted(p.stem for p in shipped("weights").glob("*.safetensors"))
        raise EmojicamError(f"--set/--model: expected a shipped pair ({', '.join(have)}), got --set {set_name} "
                            f"--model {model_name}, which has no weights (train them: emojicam train)")
    return path


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape; saved in the weights' metadata."""

    classes: int
    channels: tuple[int, int] = (8, 16)
    patch_px: int = PATCH_PX

    @property
    def feature_px(self) -> int:
        return ((self.patch_px - 2) // 2 - 2) // 2  # 36 -> 34 -> 17 -> 15 -> 7; 18 -> 16 -> 8 -> 6 -> 3

    def flops_per_patch(self) -> int:
        """Multiply-adds counted as 2 FLOPs: conv1 + conv2 + linear (ReLU, pooling, softmax not counted)."""
        c1, c2 = self.channels
        s1 = self.patch_px - 2
        s2 = s1 // 2 - 2
        conv1 = 2 * s1 * s1 * c1 * 3 * 9
        conv2 = 2 * s2 * s2 * c2 * c1 * 9
        linear = 2 * c2 * self.feature_px**2 * self.classes
        return conv1 + conv2 + linear


def _conv3x3_nhwc(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """x (N, H, W, Cin), weight (Cout, Cin, 3, 3) as nn.Conv2d holds it -> (N, H-2, W-2, Cout), valid padding."""
    h, w = x.shape[1] - 2, x.shape[2] - 2
    taps = weight.permute(2, 3, 1, 0)  # (3, 3, Cin, Cout), a view
    return sum(x[:, ky:ky + h, kx:kx + w, :] @ taps[ky, kx] for ky in range(3) for kx in range(3)) + bias


def _pool2_nhwc(x: Tensor) -> Tensor:
    """2x2 max-pool, stride 2, floor, channels-last."""
    n, h, w, c = x.shape
    return x[:, :h // 2 * 2, :w // 2 * 2, :].reshape(n, h // 2, 2, w // 2, 2, c).max((2, 4))


class TinyConvNet:
    """conv3x3(3->8) ReLU maxpool2, conv3x3(8->16) ReLU maxpool2, linear(16*7*7 -> K), log-softmax."""

    def __init__(self, config: ModelConfig):
        self.config = config
        c1, c2 = config.channels
        self.conv1 = nn.Conv2d(3, c1, 3)
        self.conv2 = nn.Conv2d(c1, c2, 3)
        self.fc = nn.Linear(c2 * config.feature_px**2, config.classes)

    def to_(self, device: str) -> TinyConvNet:
        """Move every parameter to device, in place."""
        for t in get_state_dict(self).values():
            t.replace(t.to(device)).realize()
        return self

    def replica(self, device: str) -> TinyConvNet:
        """A copy of this network with its parameters on device."""
        net = TinyConvNet(self.config)
        for mine, theirs in zip(get_state_dict(net).values(), get_state_dict(self).values(), strict=True):
            mine.replace(theirs.to(device)).realize()
        return net

    def logits(self, x: Tensor) -> Tensor:
        """x: (N, P, P, 3) RGB (P = config.patch_px), channels-last, uint8 0..255 or float; returns (N, K) logits.

        Same maths as nn.Conv2d + max_pool2d (same weights), written channels-last as sums of shifted slices times
        (Cin, Cout) weight blocks: tinygrad makes 1.5x (CPU) to 1.9x (CL) faster kernels of that, with identical
        argmax (docs/benchmarks.md)."""
        x = x.cast(dtypes.float32) * (1 / 255) - 0.5
        x = _pool2_nhwc(_conv3x3_nhwc(x, self.conv1.weight, self.conv1.bias).relu()).contiguous()
        x = _pool2_nhwc(_conv3x3_nhwc(x, self.conv2.weight, self.conv2.bias).relu()).contiguous()
        return self.fc(x.permute(0, 3, 1, 2).flatten(1))

    def planar_logits(self, x: Tensor) -> Tensor:
        """The same logits as `logits` (same weights, same input), computed as tinygrad's planar Tensor.conv2d and
        max_pool2d: the form tinygrad trains fastest (forward and backward), 4-9x the channels-last form's steps/s
        (docs/benchmarks.md). Inference keeps `logits` and the scheduled kernels."""
        x = x.permute(0, 3, 1, 2).cast(dtypes.float32) * (1 / 255) - 0.5
        x = self.conv1(x).relu().max_pool2d(2)
        x = self.conv2(x).relu().max_pool2d(2)
        return self.fc(x.flatten(1))

    def __call__(self, x: Tensor) -> Tensor:
        """(N, K) log-probabilities."""
        return self.logits(x).log_softmax(1)


@dataclass
class Checkpoint:
    """A model with the metadata it was trained with."""

    model: TinyConvNet
    class_names: list[str]
    set_fingerprint: str
    info: dict = field(default_factory=dict)  # hold-out accuracy, training settings, ...


def safetensors_bytes(tensors: dict[str, Tensor], metadata: dict[str, str]) -> bytes:
    """The safetensors file of tensors, in memory, as tinygrad's safe_save lays it out. safe_save itself writes
    through a memory map, and a full disk then kills the process (SIGBUS) instead of raising an error."""
    header: dict = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, t in tensors.items():
        array = t.numpy()
        blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": inverse_safe_dtypes[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":"))
    text += " " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text.encode() + b"".join(blobs)


def save(path: str | Path, ckpt: Checkpoint) -> None:
    """Write weights and metadata (all values strings, as safetensors wants) atomically; a failed write is one
    EmojicamError line."""
    meta = {"config": json.dumps(asdict(ckpt.model.config)), "class_names": json.dumps(ckpt.class_names),
            "set_fingerprint": ckpt.set_fingerprint, "info": json.dumps(ckpt.info)}
    data = safetensors_bytes(get_state_dict(ckpt.model), meta)
    write_atomic(Path(path), lambda tmp: tmp.write_bytes(data), make_folder=True)


# the safetensors dtypes numpy holds as they are stored (emojicam writes F32)
NUMPY_DTYPES = {"BOOL": "bool", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "U32": "<u4", "I32": "<i4",
                "U64": "<u8", "I64": "<i8", "F16": "<f2", "F32": "<f4", "F64": "<f8"}


def _read(path: Path, header_only: bool = False) -> tuple[dict, bytes]:
    """A safetensors file's JSON header and the bytes after it (the tensors' data; none with header_only). The file
    is only read: installed weights may sit on a read-only file system (tinygrad's safe_load opens them
    read-write)."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            text = f.read(size) if 0 < size < 1 << 24 else b""
            data = b"" if header_only else f.read()
        header = json.loads(text) if text and len(text) == size else None
    except (OSError, ValueError) as e:
        raise EmojicamError(f"weights: expected a safetensors file, got {path} ({e})") from None
    if not isinstance(header, dict) or "set_fingerprint" not in header.get("__metadata__", {}):
        raise EmojicamError(f"weights: expected emojicam safetensors with metadata, got {path}")
    return header, data


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file, without loading the tensors."""
    return _read(Path(path), header_only=True)[0]["__metadata__"]


def read_tensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every tensor of a safetensors file as a numpy array, and its metadata."""
    path = Path(path)
    header, data = _read(path)
    arrays = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info.get("dtype") not in NUMPY_DTYPES:
            raise EmojicamError(f"weights: expected tensors of {', '.join(NUMPY_DTYPES)}, got {info.get('dtype')} "
                                f"for {name} in {path}")
        dtype = np.dtype(NUMPY_DTYPES[info["dtype"]])
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(data) or end - begin != dtype.itemsize * int(np.prod(info["shape"])):
            raise EmojicamError(f"weights: expected {name}'s {info['shape']} {info['dtype']} data in {path}, got "
                                f"{len(data[begin:end])} bytes (truncated?)")
        arrays[name] = np.frombuffer(data, dtype, (end - begin) // dtype.itemsize, begin).reshape(info["shape"]) \
            .astype(dtype.newbyteorder("="))
    return arrays, header["__metadata__"]


def load(path: str | Path = DEFAULT_WEIGHTS, device: str | None = None) -> Checkpoint:
    """Load weights written by `save` onto `device` (tinygrad's default when None)."""
    arrays, meta = read_tensors(path)
    cfg = json.loads(meta["config"])
    model = TinyConvNet(ModelConfig(classes=cfg["classes"], channels=tuple(cfg["channels"]), patch_px=cfg["patch_px"]))
    params = get_state_dict(model)
    if set(arrays) != set(params) or any(arrays[k].shape != t.shape for k, t in params.items()):
        raise EmojicamError(f"weights: expected TinyConvNet tensors matching the metadata, got a mismatch in {path}")
    for k, t in params.items():  # replace the (never computed) random init with the stored tensors
        t.replace(Tensor(arrays[k], device=device or Device.DEFAULT)).realize()
    return Checkpoint(model, json.loads(meta["class_names"]), meta["set_fingerprint"], json.loads(meta["info"]))
