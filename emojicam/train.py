"""Training loop: perturbed emoji batches, Adam, a TinyJit step, hold-out accuracy, safetensors out."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tinygrad import Context, Device, Tensor, TinyJit, dtypes, nn

from emojicam import model as model_io
from emojicam.augment import Perturbation, holdout, perturb
from emojicam.emoji_set import EmojiSet
from emojicam.errors import EmojicamError, Interrupted
from emojicam.model import Checkpoint, ModelConfig, TinyConvNet
from emojicam.progress import progress_bar
from emojicam.settings import PATCH_PX


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; saved in the weights' metadata."""

    steps: int = 6000
    batch: int = 128
    lr: float = 3e-3
    seed: int = 0
    eval_every: int = 500
    patch_px: int = PATCH_PX  # the network's input size (18: the fast model)
    channels: tuple[int, int] = ModelConfig.channels  # the two convolutions' output channels


def accuracy(model: TinyConvNet, x: np.ndarray, y: np.ndarray, device: str, batch: int = 2048) -> float:
    """Top-1 accuracy of model on uint8 patches x with labels y."""
    hits = 0
    for i in range(0, len(x), batch):
        pred = model.planar_logits(Tensor(x[i:i + batch], device=device)).argmax(1).numpy()
        hits += int((pred == y[i:i + batch]).sum())
    return hits / len(x)


def _resumed(resume: str | Path, emoji_set: EmojiSet, cfg: TrainConfig, device: str) -> Checkpoint:
    ckpt = model_io.load(resume, device)
    if ckpt.set_fingerprint != emoji_set.fingerprint or ckpt.class_names != emoji_set.names:
        raise EmojicamError(f"--resume: expected weights trained on this emoji set (fingerprint "
                            f"{emoji_set.fingerprint}), got weights for set {ckpt.set_fingerprint}")
    if ckpt.model.config.patch_px != cfg.patch_px:
        raise EmojicamError(f"--resume: expected weights for {cfg.patch_px} px patches (--patch-px), "
                            f"got {ckpt.model.config.patch_px} px in {resume}")
    if ckpt.model.config.channels != cfg.channels:
        raise EmojicamError(f"--resume: expected weights with channels {_pair(cfg.channels)} (--channels), "
                            f"got {_pair(ckpt.model.config.channels)} in {resume}")
    return ckpt


def _pair(channels: tuple[int, int]) -> str:
    return ",".join(map(str, channels))


def train(emoji_set: EmojiSet, out: str | Path, cfg: TrainConfig = TrainConfig(),
          perturbation: Perturbation = Perturbation(), device: str | None = None, quiet: bool = False,
          resume: str | Path | None = None) -> Checkpoint:
    """Train TinyConvNet on emoji_set and save it to out; Ctrl-C stops early and still saves, and so do SIGTERM and
    SIGHUP, whose Interrupted is raised again once the weights are written (the exit status then says which). With
    resume, start from those weights at the step they stopped at (the learning-rate schedule goes on from there;
    Adam's moment estimates start afresh). The network trains in its planar form (TinyConvNet.planar_logits), the
    one tinygrad trains fastest; the weights are the same for the channels-last inference form."""
    device = device or Device.DEFAULT
    rgba = emoji_set.rgba_patches(cfg.patch_px)
    hx, hy = holdout(rgba, p=perturbation)
    Tensor.manual_seed(cfg.seed)
    start, curve, seconds = 0, [], 0.0
    if resume is not None:
        previous = _resumed(resume, emoji_set, cfg, device)
        model = previous.model
        start, curve = previous.info.get("steps_done", 0), previous.info.get("holdout_curve", [])
        seconds = previous.info.get("train_seconds", 0.0)
    else:
        config = ModelConfig(classes=len(emoji_set), channels=cfg.channels, patch_px=cfg.patch_px)
        model = TinyConvNet(config).to_(device)
    rng = np.random.default_rng(cfg.seed + start)  # a resumed run draws new batches, not the first ones again
    opt = nn.optim.Adam(nn.state.get_parameters(model), lr=cfg.lr)

    @TinyJit
    @Context(TRAINING=1)
    def step(x: Tensor, y: Tensor) -> Tensor:
        opt.zero_grad()
        loss = model.planar_logits(x).sparse_categorical_crossentropy(y).backward()
        return loss.realize(*opt.schedule_step())

    acc, done, started, signalled = (curve[-1][1] if curve else 0.0), start, time.perf_counter(), None

    def checkpoint() -> Checkpoint:
        info = {"holdout_top1": round(acc, 5), "holdout_size": len(hy), "steps_done": done,
                "train_seconds": round(seconds + time.perf_counter() - started, 1), "device": device,
                "holdout_curve": curve, "train": asdict(cfg), "perturbation": perturbation.as_dict()}
        ckpt = Checkpoint(model, list(emoji_set.names), emoji_set.fingerprint, info)
        model_io.save(out, ckpt)
        return ckpt

    def batch() -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, len(emoji_set), cfg.batch).astype(np.int32)
        return perturb(rgba[labels], rng, perturbation), labels

    # the next batch is perturbed on the host (numpy/OpenCV, which release the GIL) while the device trains on
    # this one: the perturbations cost 0.2-0.6x a step (benchmarks/results/2026-12-02-train-speed.md)
    pool = ThreadPoolExecutor(1)
    upcoming = pool.submit(batch)
    bar = progress_bar(cfg.steps, "train", "step", quiet)
    bar.update(start)  # a resumed run's bar starts where it stopped
    try:
        for i in range(start + 1, cfg.steps + 1):
            lr = cfg.lr * 0.5 * (1 + np.cos(np.pi * (i - 1) / cfg.steps))  # cosine decay
            opt.lr.assign(Tensor([lr], device=device, dtype=dtypes.float32)).realize()
            patches, labels = upcoming.result()
            upcoming = pool.submit(batch)
            loss = step(Tensor(patches, device=device), Tensor(labels, device=device)).item()
            done = i  # steps completed, also when a later one is interrupted
            if done % cfg.eval_every == 0 and done < cfg.steps:
                acc = accuracy(model, hx, hy, device)
                curve.append([done, round(acc, 5), round(seconds + time.perf_counter() - started, 1)])
                checkpoint()  # a killed run loses at most eval_every steps (`--resume`)
            bar.set_postfix(loss=f"{loss:.3f}", holdout=f"{acc:.2%}", refresh=False)
            bar.update(1)
    except KeyboardInterrupt as e:
        signalled = e if isinstance(e, Interrupted) else None
        print(f"interrupted{f' by {e}' if signalled else ''} after {done} steps; saving what was learned to {out}",
              flush=True)
    finally:
        bar.close()
        pool.shutdown(cancel_futures=True)
    acc = accuracy(model, hx, hy, device)
    if not curve or curve[-1][0] != done:
        curve.append([done, round(acc, 5), round(seconds + time.perf_counter() - started, 1)])
    ckpt = checkpoint()
    if signalled is not None:
        raise signalled
    return ckpt
