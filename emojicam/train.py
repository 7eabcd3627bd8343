"""Training loop: perturbed emoji batches, Adam, a TinyJit step, hold-out accuracy, safetensors out."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tinygrad import Context, Device, Tensor, TinyJit, dtypes, nn
from tqdm import tqdm

from emojicam import model as model_io
from emojicam.augment import Perturbation, holdout, perturb
from emojicam.emoji_set import EmojiSet
from emojicam.errors import Interrupted
from emojicam.model import Checkpoint, ModelConfig, TinyConvNet


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; saved in the weights' metadata."""

    steps: int = 6000
    batch: int = 128
    lr: float = 3e-3
    seed: int = 0
    eval_every: int = 500


def accuracy(model: TinyConvNet, x: np.ndarray, y: np.ndarray, device: str, batch: int = 2048) -> float:
    """Top-1 accuracy of model on uint8 patches x with labels y."""
    hits = 0
    for i in range(0, len(x), batch):
        pred = model(Tensor(x[i:i + batch], device=device)).argmax(1).numpy()
        hits += int((pred == y[i:i + batch]).sum())
    return hits / len(x)


def train(emoji_set: EmojiSet, out: str | Path, cfg: TrainConfig = TrainConfig(),
          perturbation: Perturbation = Perturbation(), device: str | None = None, progress: bool = True) -> Checkpoint:
    """Train TinyConvNet on emoji_set and save it to out; Ctrl-C stops early and still saves, and so do SIGTERM and
    SIGHUP, whose Interrupted is raised again once the weights are written (the exit status then says which)."""
    device = device or Device.DEFAULT
    rgba = emoji_set.rgba_patches()
    hx, hy = holdout(rgba, p=perturbation)
    Tensor.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = TinyConvNet(ModelConfig(classes=len(emoji_set))).to_(device)
    opt = nn.optim.Adam(nn.state.get_parameters(model), lr=cfg.lr)

    @TinyJit
    @Context(TRAINING=1)
    def step(x: Tensor, y: Tensor) -> Tensor:
        opt.zero_grad()
        loss = model(x).sparse_categorical_crossentropy(y).backward()
        return loss.realize(*opt.schedule_step())

    acc, done, started, signalled = 0.0, 0, time.perf_counter(), None
    try:
        with tqdm(total=cfg.steps, disable=not progress, unit="step", dynamic_ncols=True) as bar:
            for i in range(1, cfg.steps + 1):
                lr = cfg.lr * 0.5 * (1 + np.cos(np.pi * (i - 1) / cfg.steps))  # cosine decay
                opt.lr.assign(Tensor([lr], device=device, dtype=dtypes.float32)).realize()
                labels = rng.integers(0, len(emoji_set), cfg.batch).astype(np.int32)
                x = Tensor(perturb(rgba[labels], rng, perturbation), device=device)
                loss = step(x, Tensor(labels, device=device)).item()
                done = i  # steps completed, also when a later one is interrupted
                if done % cfg.eval_every == 0 or done == cfg.steps:
                    acc = accuracy(model, hx, hy, device)
                bar.set_postfix(loss=f"{loss:.3f}", holdout=f"{acc:.2%}", refresh=False)
                bar.update(1)
    except KeyboardInterrupt as e:
        signalled = e if isinstance(e, Interrupted) else None
        print(f"interrupted{f' by {e}' if signalled else ''} after {done} steps; saving what was learned to {out}",
              flush=True)
    acc = accuracy(model, hx, hy, device)
    info = {"holdout_top1": round(acc, 5), "holdout_size": len(hy), "steps_done": done,
            "train_seconds": round(time.perf_counter() - started, 1), "device": device,
            "train": asdict(cfg), "perturbation": perturbation.as_dict()}
    ckpt = Checkpoint(model, list(emoji_set.names), emoji_set.fingerprint, info)
    model_io.save(out, ckpt)
    if signalled is not None:
        raise signalled
    return ckpt
