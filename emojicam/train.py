"""Training loop: perturbed emoji batches, Adam, a TinyJit step, hold-out accuracy, safetensors out."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tinygrad import Context, Device, Tensor, TinyJit, dtypes, nn

from emojicam import model as model_io
from emojicam.augment import Perturbation, holdout, perturb
from emojicam.emoji_set import EmojiSet
from emojicam.errors import EmojicamError, Interrupted
from emojicam.grid import PATCH_PX
from emojicam.model import Checkpoint, ModelConfig, TinyConvNet
from emojicam.progress import progress_bar


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
    emoji_set.check_trained_on(ckpt.set_fingerprint, ckpt.class_names, "--resume")
    if ckpt.model.config.patch_px != cfg.patch_px:
        raise EmojicamError(f"--resume: expected weights for {cfg.patch_px} px patches (--patch-px), "
                            f"got {ckpt.model.config.patch_px} px in {resume}")
    if ckpt.model.config.channels != cfg.channels:
        raise EmojicamError(f"--resume: expected weights with channels {_pair(cfg.channels)} (--channels), "
                            f"got {_pair(ckpt.model.config.channels)} in {resume}")
    return ckpt


def _pair(channels: tuple[int, int]) -> str:
    return ",".join(map(str, channels))


@dataclass
class _Run:
    """Where a training run stands: steps done, the latest hold-out accuracy and its curve, seconds trained."""

    done: int = 0
    acc: float = 0.0
    curve: list = field(default_factory=list)
    seconds_before: float = 0.0  # trained before this process (a resumed run)
    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        return round(self.seconds_before + time.perf_counter() - self.started, 1)


def _start(emoji_set: EmojiSet, cfg: TrainConfig, device: str, resume: str | Path | None) -> tuple[TinyConvNet, _Run]:
    """A new network, or the one resumed with where its run stopped."""
    if resume is None:
        config = ModelConfig(classes=len(emoji_set), channels=cfg.channels, patch_px=cfg.patch_px)
        return TinyConvNet(config).to_(device), _Run()
    previous = _resumed(resume, emoji_set, cfg, device)
    curve = previous.info.get("holdout_curve", [])
    return previous.model, _Run(previous.info.get("steps_done", 0), curve[-1][1] if curve else 0.0, curve,
                                previous.info.get("train_seconds", 0.0))


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
    model, run = _start(emoji_set, cfg, device, resume)
    rng = np.random.default_rng(cfg.seed + run.done)  # a resumed run draws new batches, not the first ones again

    def evaluate() -> None:
        run.acc = accuracy(model, hx, hy, device)
        run.curve.append([run.done, round(run.acc, 5), run.seconds()])

    def checkpoint() -> Checkpoint:
        info = {"holdout_top1": round(run.acc, 5), "holdout_size": len(hy), "steps_done": run.done,
                "train_seconds": run.seconds(), "device": device, "holdout_curve": run.curve,
                "train": asdict(cfg), "perturbation": perturbation.as_dict()}
        ckpt = Checkpoint(model, list(emoji_set.names), emoji_set.fingerprint, info)
        model_io.save(out, ckpt)
        return ckpt

    def batch() -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, len(emoji_set), cfg.batch).astype(np.int32)
        return perturb(rgba[labels], rng, perturbation), labels

    signalled = _steps(model, cfg, device, run, batch, lambda: (evaluate(), checkpoint()), quiet, out)
    if not run.curve or run.curve[-1][0] != run.done:
        evaluate()
    else:
        run.acc = accuracy(model, hx, hy, device)
    ckpt = checkpoint()
    if signalled is not None:
        raise signalled
    return ckpt


def _steps(model: TinyConvNet, cfg: TrainConfig, device: str, run: _Run,
           batch: Callable[[], tuple[np.ndarray, np.ndarray]], at_eval: Callable[[], object], quiet: bool,
           out: str | Path) -> Interrupted | None:
    """The training steps from run.done + 1 to cfg.steps, calling at_eval (evaluate and save to out) every
    cfg.eval_every steps; Ctrl-C (and SIGTERM, SIGHUP) ends them early: returns the Interrupted to raise once the
    weights are saved, if any."""
    opt = nn.optim.Adam(nn.state.get_parameters(model), lr=cfg.lr)

    @TinyJit
    @Context(TRAINING=1)
    def step(x: Tensor, y: Tensor) -> Tensor:
        opt.zero_grad()
        loss = model.planar_logits(x).sparse_categorical_crossentropy(y).backward()
        return loss.realize(*opt.schedule_step())

    # the next batch is perturbed on the host (numpy/OpenCV, which release the GIL) while the device trains on
    # this one: the perturbations cost 0.2-0.6x a step (see docs/benchmarks.md)
    pool = ThreadPoolExecutor(1)
    upcoming = pool.submit(batch)
    bar = progress_bar(cfg.steps, "train", "step", quiet)
    bar.update(run.done)  # a resumed run's bar starts where it stopped
    try:
        for i in range(run.done + 1, cfg.steps + 1):
            lr = cfg.lr * 0.5 * (1 + np.cos(np.pi * (i - 1) / cfg.steps))  # cosine decay
            opt.lr.assign(Tensor([lr], device=device, dtype=dtypes.float32)).realize()
            patches, labels = upcoming.result()
            upcoming = pool.submit(batch)
            loss = step(Tensor(patches, device=device), Tensor(labels, device=device)).item()
            run.done = i  # steps completed, also when a later one is interrupted
            if run.done % cfg.eval_every == 0 and run.done < cfg.steps:
                at_eval()  # a killed run loses at most eval_every steps (`--resume`)
            bar.set_postfix(loss=f"{loss:.3f}", holdout=f"{run.acc:.2%}", refresh=False)
            bar.update(1)
    except KeyboardInterrupt as e:
        signalled = e if isinstance(e, Interrupted) else None
        print(f"interrupted{f' by {e}' if signalled else ''} after {run.done} steps; saving what was learned to {out}",
              flush=True)
        return signalled
    finally:
        bar.close()
        pool.shutdown(cancel_futures=True)
    return None
