"""The training loop: :func:`train` sets up the process and ``_train`` reads top to bottom as
the run goes, one call per phase (run folder, data, model and optimiser, tensors, state; per
epoch a pass over the data and the selection on PublicTest; the final evaluation).

Protocol: the model is selected on PublicTest only; PrivateTest is evaluated exactly
once, with the selected weights, after training ends, and is never used to choose.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fervid.data.datasets import FERData, load_dataset, load_training_data, stratified_subset
from fervid.data.ferplus import align, load_ferplus, targets
from fervid.data.preprocess import PreprocessConfig, normalize, to_unit
from fervid.emotions import FER2013, FERPLUS8
from fervid.errors import UserFileNotFoundError, UserValueError
from fervid.inference.logits import tta_logits
from fervid.models import count_parameters, create_model, model_preprocess
from fervid.models.checkpoint import (
    make_checkpoint,
    read_resume_checkpoint,
    save_atomic,
)
from fervid.runtime import autocast, progress_bar, progress_stage, softmax
from fervid.safety import RUN_FILES, prepare_run_dir, write_json_atomic, write_text_atomic
from fervid.training import distributed
from fervid.training.augment import augment, mix
from fervid.training.config import TrainConfig
from fervid.training.imbalance import dynamic_weights, focal_loss, soft_cross_entropy
from fervid.training.imbalance import plan as imbalance_plan
from fervid.training.optim import apply_freeze, param_groups
from fervid.training.warmstart import init_model

# ----------------------------------------------------------------------------- helpers


def basic_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    labels = list(range(n_classes))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "recall": [float(r) for r in recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0)],
    }


# -------------------------------------------------------------------------- the data


@dataclass
class Split:
    images: np.ndarray
    labels: np.ndarray  # int class for selection metrics (-1: excluded)
    targets: np.ndarray  # int labels, or N x K floats (soft / multi-label)
    index: np.ndarray | None = None  # each image's row in the source (matches a teacher's rows)

    def select(self, keep: np.ndarray) -> Split:
        return Split(
            self.images[keep], self.labels[keep], self.targets[keep], None if self.index is None else self.index[keep]
        )


def _standard_splits(cfg: TrainConfig, data: FERData) -> FERData:
    """Data without a Training split (e.g. a flat ``<class>/*`` folder) is all training data
    (split names from file prefixes such as Kaggle's ``PublicTest_`` are ignored then);
    without PublicTest, a stratified ``val_fraction`` of Training is held out (seeded) for
    model selection."""
    # As objects: a fixed-width str array (e.g. <U7 for "Unknown") would truncate the names written into it.
    splits = data.splits.astype(object)
    if "Training" not in data.split_names:
        splits[:] = "Training"
    if "PublicTest" not in set(splits.tolist()):
        tr = np.flatnonzero((splits == "Training") & (data.labels >= 0))
        if len(tr) < 2:
            raise UserValueError(
                f"{data.source}: too few labelled training images ({len(tr)}) to hold out a validation set"
            )
        n_val = max(1, int(round(cfg.val_fraction * len(tr))))
        splits[tr[stratified_subset(data.labels[tr], n_val, cfg.seed)]] = "PublicTest"
        if not (splits == "Training").any():  # the stratified share rounds up per class
            raise UserValueError(
                f"{data.source}: val_fraction {cfg.val_fraction} holds out all {len(tr)} labelled training "
                "images; use a smaller val_fraction or more images"
            )
    return dataclasses.replace(data, splits=splits.astype(str)) if (splits != data.splits).any() else data


def prepare_splits(cfg: TrainConfig, data: FERData) -> tuple[dict[str, Split], tuple[str, ...]]:
    if cfg.targets == "fer2013":
        names = tuple(data.label_names)  # FER2013, or a folder's own label set (cfg.labels)
        data = _standard_splits(cfg, data)
        out: dict[str, Split] = {}
        for s in ("Training", "PublicTest", "PrivateTest"):
            if s in data.split_names:
                d = data.split(s)
                d = d.select(d.labels >= 0)  # images of classes outside the label set
                out[s] = Split(d.images, d.labels, d.labels, d.index)
        return out, names
    votes_all = load_ferplus(cfg.ferplus, expected_rows=None)  # type: ignore[arg-type]
    mode = cfg.targets.split("-", 1)[1]
    names = FERPLUS8 if cfg.ferplus_classes == 8 else FER2013
    out = {}
    for s in ("Training", "PublicTest", "PrivateTest"):
        if s not in data.split_names:
            continue
        d = data.split(s)
        v = align(d, votes_all)
        if cfg.ferplus_classes == 7:
            v = np.concatenate([v[:, :7], v[:, 8:]], 1)  # drop contempt votes
        tgt, keep = targets(v, mode, cfg.multilabel_threshold, not_face=votes_all.not_face[d.index])  # type: ignore[arg-type]
        if cfg.ferplus_classes == 7:
            tgt = tgt[:, :7] if tgt.ndim == 2 else tgt
        maj, maj_keep = targets(v, "majority")
        if s == "Training":
            # FER+ rule: unknown / not-a-face / no-agreement images are not trained on.
            out[s] = Split(d.images[keep], np.where(maj_keep, maj, -1)[keep], tgt[keep], d.index[keep])
        else:
            # Evaluation uses the majority label where one exists (the FER+ test protocol).
            out[s] = Split(d.images[maj_keep], maj[maj_keep], maj[maj_keep])
    return out, names


# --------------------------------------------------------------------------- training


def compute_loss(
    cfg: TrainConfig, logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The training loss for a batch, by target mode (Barsoum et al. 2016 for FER+):

    - int labels (``fer2013``, ``ferplus-majority``, and ``ferplus-probability`` after a
      label is drawn from each face's vote distribution): cross-entropy (or focal loss);
    - an ``N x K`` distribution (``ferplus-crossentropy``, or mixup): cross-entropy against it;
    - ``ferplus-multilabel`` (``N x K`` 0/1 for emotions with >= ``multilabel_threshold`` of
      the votes): binary cross-entropy per emotion (``multilabel_loss="bce"``), or the
      paper's ``-log max_{k accepted} p_k`` (``"max"``: any accepted emotion is right).
    """
    if cfg.targets == "ferplus-multilabel" and cfg.multilabel_loss == "max":
        logp = F.log_softmax(logits.float(), 1).masked_fill(y <= 0, float("-inf"))
        return -logp.max(1).values.mean()
    if cfg.targets == "ferplus-multilabel":
        return F.binary_cross_entropy_with_logits(logits.float(), y.float())
    if cfg.imbalance == "focal":
        return focal_loss(logits, y, cfg.focal_gamma, None, cfg.label_smoothing)
    if y.ndim == 2:
        return soft_cross_entropy(logits, y.float(), weights, cfg.label_smoothing)
    return F.cross_entropy(logits, y, weight=weights, label_smoothing=cfg.label_smoothing)


def per_row(what: str, path: str, keys: tuple[str, ...], split: Split) -> list[np.ndarray]:
    """Arrays ``keys`` of an .npz keyed by data row (its ``index`` array), reordered to the rows
    of ``split``; a missing file, key or row is a named error."""
    p = Path(path)
    if not p.is_file():
        raise UserFileNotFoundError(f"{what}: no such file {p}")
    try:
        with np.load(p) as z:
            index = np.asarray(z["index"])
            arrays = [np.asarray(z[key]) for key in keys]
    except (KeyError, ValueError, OSError) as e:
        raise UserValueError(f"{what} {p}: not an .npz with 'index' and {list(keys)} ({e})") from None
    if any(len(a) != len(index) for a in arrays):
        raise UserValueError(f"{what} {p}: {[len(a) for a in arrays]} entries for {len(index)} rows")
    if split.index is None:
        raise UserValueError(f"{what}: the training data has no row index to match the file's rows")
    order = np.argsort(index)
    pos = np.clip(np.searchsorted(index[order], split.index), 0, max(0, len(index) - 1))
    ok = index[order][pos] == split.index if len(index) else np.zeros(len(split.index), bool)
    if not ok.all():
        raise UserValueError(
            f"{what} {p}: nothing for {int((~ok).sum())} of {len(ok)} training rows "
            f"(first missing row {int(split.index[~ok][0])})"
        )
    return [a[order][pos] for a in arrays]


def teacher_probs(path: str, split: Split, k: int, temperature: float) -> np.ndarray:
    """``softmax(logits / temperature)`` of a stored teacher (an .npz with ``index``, the data
    rows it was computed on, and ``logits``, ``N x k``) for every row of ``split``, in order."""
    (logits,) = per_row("teacher", path, ("logits",), split)
    if logits.ndim != 2 or logits.shape[1] != k:
        raise UserValueError(f"teacher {path}: logits of shape {logits.shape}; expected N x {k}")
    return softmax(logits, temperature).astype(np.float32)


def aligned_views(x: torch.Tensor, theta: torch.Tensor, pick: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (``N x C x H x W``) where ``pick`` is true warped by their ``theta``
    (``N x 2 x 3``, ``affine_grid`` convention) into the aligned crop; border pixels repeat,
    as in :func:`fervid.inference.crop.warp_face`."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return torch.where(pick.view(-1, 1, 1, 1), warped, x)


def kd_loss(logits: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton et al.'s distillation term: ``T^2 * KL(teacher_T || softmax(logits / T))`` (the
    ``T^2`` keeps its gradient on the scale of the label loss)."""
    logp = F.log_softmax(logits.float() / temperature, 1)
    return F.kl_div(logp, teacher, reduction="batchmean") * temperature**2


def budget_epochs(budget_minutes: float, elapsed: float, epoch_seconds: float, done: int, cap: int, first: bool) -> int:
    """The run length that fits ``budget_minutes`` of wall clock: ``done`` epochs took
    ``elapsed`` seconds and an epoch now takes ``epoch_seconds`` (the pace); as many more as the
    rest of the budget holds at that pace, never more than ``cap`` (the epochs asked for) in all.
    Within that cap, after the first epoch at least one more runs (the schedule needs an epoch
    after the warm-up); later, at least the ones done."""
    left = int((budget_minutes * 60 - elapsed) / max(1e-3, epoch_seconds))
    return min(cap, max(done + (1 if first else 0), done + left))


def _lr_factor(cfg: TrainConfig, epoch_f: float, plateau: float) -> float:
    # Warm-up takes at most a fifth of the run, so a 1-epoch smoke run still trains at full rate.
    w_ep = min(cfg.warmup_epochs, cfg.epochs / 5)
    warm = min(1.0, epoch_f / w_ep) if w_ep > 0 else 1.0
    if cfg.schedule == "cosine":
        t = min(1.0, max(0.0, (epoch_f - w_ep) / max(1e-9, cfg.epochs - w_ep)))
        f = 0.5 * (1 + math.cos(math.pi * t))
    elif cfg.schedule == "step":
        f = cfg.step_gamma ** sum(epoch_f >= e for e in cfg.step_epochs)
    elif cfg.schedule == "plateau":
        f = plateau
    else:
        f = 1.0
    return warm * f


def train(
    cfg: TrainConfig, *, resume: bool = False, data: FERData | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.data``; returns the final metrics. Writes to ``cfg.out``:
    ``config.json``, ``metrics.jsonl`` (one line per epoch), ``last.pt``, ``best.pt``, ``final.json``.
    A directory that already holds a run needs ``resume`` (continue from ``last.pt``) or
    ``overwrite`` (its run files are deleted first); otherwise it is an error, before any work.

    ``resume`` with the run's own ``epochs`` continues it (a time-budgeted run keeps the length
    it resolved); with a larger ``epochs`` it extends the run to that many (the schedule is
    then the new length's: a cosine schedule continues from where ``epoch / epochs`` puts it).

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), this is data-parallel training with the same
    results as one process (see :mod:`fervid.training.distributed`); only rank 0 writes.

    Side effects: none on ``cfg`` (what the run resolved -- the epoch count under a time budget,
    a warm start's architecture -- is in ``OUT/config.json``). torch's global RNG (CPU, and the
    run's GPU) and thread count are restored on return; numpy's global RNG is not used.
    """
    cfg = copy.deepcopy(cfg)
    cfg.validate()
    ctx, device = distributed.setup(cfg.device)
    threads = torch.get_num_threads()
    finished = False
    try:
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            if cfg.workers_threads:
                torch.set_num_threads(cfg.workers_threads)
            result = _train(cfg, resume=resume, data=data, overwrite=overwrite, ctx=ctx, device=device)
        finished = True
        return result
    finally:
        torch.set_num_threads(threads)
        distributed.teardown(ctx, finished=finished)


def _load_data(cfg: TrainConfig) -> FERData:
    if cfg.labels:
        return load_training_data(cfg.data, cfg.labels)  # an image folder with its own label set
    return load_dataset(cfg.data)


def _resumed_epochs(asked: int, state: dict[str, Any], out: Path) -> int:
    """The run length after ``--resume``: the run's own when ``asked`` is what it was started
    (or last extended) with, else ``asked`` (extending, or shortening to no fewer epochs than done)."""
    done = int(state["epoch"])
    before = int(state.get("epochs_requested", state.get("epochs", asked)))
    if asked == before:
        return int(state.get("epochs", asked))  # the same run goes on; a time budget keeps its resolved length
    if asked < done:
        raise UserValueError(
            f"--resume: {out} has already run {done} epochs; epochs={asked} is fewer "
            "(give more epochs to extend the run)"
        )
    return asked


def _rank_loss_scale(
    cfg: TrainConfig, y: torch.Tensor, w: torch.Tensor, n_global: int, ctx: distributed.DistContext
) -> torch.Tensor | float:
    """The factor by which one rank's loss is multiplied so that DDP's average of the ranks'
    gradients is the gradient of the loss over the whole global batch: ``N * n_r / n``, where
    ``n`` is the loss's normaliser -- the row count for a plain mean, ``sum w[y]`` for the
    class-weighted cross-entropy (a weighted mean, whose total needs an all-reduce)."""
    weighted = y.ndim == 1 and cfg.imbalance != "focal" and cfg.targets != "ferplus-multilabel"
    if weighted:
        local = w[y].sum().float().reshape(1)
        return local * ctx.world_size / distributed.all_reduce(local.detach().clone(), ctx)
    return len(y) * ctx.world_size / n_global


def _predict(
    model: torch.nn.Module,
    images: np.ndarray,
    device: torch.device,
    ctx: distributed.DistContext,
    progress: bool = False,
) -> np.ndarray:
    """Top labels of ``images``; under DDP each rank predicts rows ``rank::N`` and every rank gets
    all. ``progress``: a bar over the faces on the main rank (a CPU validation takes 10-40 s)."""
    part = images[ctx.rank :: ctx.world_size]
    pred = (
        tta_logits(model, part, "none", device, batch_size=512, progress=progress and ctx.is_main).argmax(1)
        if len(part)
        else torch.zeros(0, dtype=torch.int64)
    )
    return distributed.gather_rows(pred, len(images), ctx).numpy()


CHECKPOINTS: tuple[str, ...] = ("last.pt", "best.pt", "final.json")


def start_run_dir(out: str | Path, *, resume: bool = False, overwrite: bool = False) -> tuple[Path, bool]:
    """The run folder made ready (:func:`fervid.safety.prepare_run_dir`) and whether to resume.

    A folder whose run stopped before its first checkpoint (its ``config.json`` and an empty
    ``metrics.jsonl``: no logged epoch, no ``last.pt``/``best.pt``/``final.json``) holds no
    finished epoch: it is not a run to protect, so a plain rerun replaces those files and
    ``resume`` starts the run from its beginning (there is nothing else to continue from)."""
    p = Path(out)
    log = p / "metrics.jsonl"
    logged = log.is_file() and log.stat().st_size > 0
    if p.is_dir() and not overwrite and not logged and not any((p / c).exists() for c in CHECKPOINTS):
        if any((p / a).exists() for a in RUN_FILES):
            overwrite, resume = True, False
    return prepare_run_dir(p, resume=resume, overwrite=overwrite), resume


def build_model(cfg: TrainConfig, names: tuple[str, ...]) -> torch.nn.Module:
    """``cfg.model`` with ``cfg.model_args`` (names and types checked by the config), tried on a
    blank batch in eval mode (no statistics or random state change): a value the family cannot
    build or run (``drop: 5``, ``widths: []``, ``width: 0``) is a user error naming the
    arguments, before the run starts rather than at its first step."""
    try:
        model = create_model(cfg.model, labels=names, **cfg.model_args)
        pre = model_preprocess(model)
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(2, pre.in_chans, pre.input_size, pre.input_size))
        model.train()
        if tuple(out.shape) != (2, len(names)):
            raise ValueError(f"it gives outputs of shape {tuple(out.shape)} for 2 faces and {len(names)} labels")
        return model
    except (ValueError, TypeError, RuntimeError, IndexError, ZeroDivisionError) as e:
        if isinstance(e, UserValueError):
            raise
        raise UserValueError(f"config key 'model_args' {cfg.model_args}: {cfg.model} cannot be built ({e})") from e


class NonFiniteLossError(UserValueError):
    """Training produced a NaN or infinite loss: the run stops before saving broken weights."""


def _check_loss(value: float, epoch: int, step: int | None, cfg: TrainConfig) -> None:
    if math.isfinite(value):
        return
    where = f"epoch {epoch + 1}" + (f", step {step + 1}" if step is not None else "")
    raise NonFiniteLossError(
        f"training loss is {value} at {where}: the run stopped and no checkpoint of this epoch was "
        f"saved (lr {cfg.lr:g}, imbalance {cfg.imbalance}, grad_clip {cfg.grad_clip}); lower the "
        "learning rate or check the data and loss settings"
    )


# ----------------------------------------------------------------------- the run, in phases
#
# _train reads as the run goes: the run folder, the data, the model and its optimiser, the
# training tensors, the state (fresh or resumed); then per epoch one pass over the data
# (_train_epoch) and the selection on PublicTest (_validate, _end_epoch); at the end the one
# PrivateTest evaluation (_finish). Every random draw and every collective across ranks
# happens in the order of the calls in _train, on every rank alike.


@dataclass
class _Tensors:
    """The training split on the device (uint8 images, once); batches are gathered by index."""

    x: torch.Tensor
    y: torch.Tensor  # int labels, or N x K floats (soft / multi-label)
    strength: torch.Tensor  # per-row augmentation strength (the imbalance plan)
    draw: np.ndarray | None  # per-row sampling distribution (oversampling); None: a permutation
    teacher: torch.Tensor | None  # the teacher's softened distribution per row (distillation)
    theta: torch.Tensor | None  # per-row warps into the aligned crop (aligned views)
    found: torch.Tensor | None

    @property
    def n(self) -> int:
        return len(self.x)


@dataclass
class _Run:
    """What the phases of one run share. ``cfg.epochs`` (a time budget), ``weights`` ("dynamic"
    imbalance) and ``state`` (what ``last.pt`` stores for a resume) change as the run goes."""

    cfg: TrainConfig
    ctx: distributed.DistContext
    device: torch.device
    out: Path
    splits: dict[str, Split]  # as prepared: PublicTest selects, PrivateTest is scored once
    k: int
    model: torch.nn.Module  # evaluation and checkpoints use the bare model
    fwd: Callable[[torch.Tensor], torch.Tensor]  # training uses it under DDP / torch.compile
    opt: torch.optim.Optimizer
    pre: PreprocessConfig
    data: _Tensors
    weights: np.ndarray
    state: dict[str, Any] = field(default_factory=dict)
    t_start: float = 0.0  # this call's start (the time budget counts from here)
    t_first: float = 0.0  # the end of this call's first epoch

    @property
    def steps(self) -> int:
        return max(1, self.data.n // self.cfg.batch_size)

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out / "best.pt"


@dataclass
class _EpochStats:
    """One epoch's training totals (summed over ranks) and its timing."""

    loss: float
    correct: float
    seen: float
    lr: float  # the rate of the epoch's last step
    t0: float  # when its training began
    train_time: float


def _train(
    cfg: TrainConfig,
    *,
    resume: bool,
    data: FERData | None,
    overwrite: bool,
    ctx: distributed.DistContext,
    device: torch.device,
) -> dict[str, Any]:
    # Rank 0 owns the run directory; an error there (a run already in it...) stops every rank.
    out, resume = distributed.run_on_main(lambda: start_run_dir(cfg.out, resume=resume, overwrite=overwrite), ctx)
    if ctx.enabled and cfg.batch_size < ctx.world_size:
        raise UserValueError(
            f"batch_size {cfg.batch_size} (the global batch) is smaller than the {ctx.world_size} processes"
        )
    torch.manual_seed(cfg.seed)  # the initial weights (each epoch re-seeds from (seed, epoch))
    splits, train_s, names = _training_splits(cfg, data, ctx)
    model, fwd, opt = _training_model(cfg, names, device, ctx)
    weights, tensors = _training_tensors(cfg, train_s, len(names), device)
    run = _Run(
        cfg=cfg,
        ctx=ctx,
        device=device,
        out=out,
        splits=splits,
        k=len(names),
        model=model,
        fwd=fwd,
        opt=opt,
        pre=model_preprocess(model),
        data=tensors,
        weights=weights,
    )
    _start_state(run, resume)
    _check_schedule_learns(run)
    log_f = _open_log(run, resume)
    run.t_start = run.t_first = time.time()
    epoch = run.state["epoch"]
    budget_cap = cfg.epochs  # a time budget never runs more epochs than asked
    while epoch < cfg.epochs:  # a while loop: the time budget may shorten cfg.epochs after epoch 1
        stats = _train_epoch(run, epoch)
        # validation, the checkpoints and the log line: 10-40 s on a loaded CPU
        with progress_stage(
            f"epoch {epoch + 1}/{cfg.epochs}: validating, saving", enabled=cfg.progress and ctx.is_main
        ):
            rec, vm = _validate(run, epoch, stats)
            stop = _end_epoch(run, epoch, rec, vm, budget_cap, log_f, t0=stats.t0)
        if stop:
            break  # early stopping
        epoch += 1
    if log_f is not None:
        log_f.close()
    return distributed.run_on_main(lambda: _finish(run), ctx)


def _training_splits(
    cfg: TrainConfig, data: FERData | None, ctx: distributed.DistContext
) -> tuple[dict[str, Split], Split, tuple[str, ...]]:
    """The prepared splits, the Training split to train on (``max_train_samples`` applied) and
    the label names."""
    if data is None:
        # Rank 0 loads first (it fills the parsed-CSV cache the others then read); a bad path
        # is reported by every rank.
        loaded = distributed.run_on_main(lambda: _load_data(cfg), ctx, share=False)
        data = loaded if ctx.is_main else _load_data(cfg)
    splits, names = prepare_splits(cfg, data)
    for s in ("Training", "PublicTest"):
        if s not in splits or len(splits[s].images) == 0:  # an empty batch's loss is NaN; selection needs images
            raise UserValueError(f"{data.source}: no {s} images to train with (after labels and targets are applied)")
    train_s = splits["Training"]
    if cfg.max_train_samples and cfg.max_train_samples < len(train_s.images):
        strat = np.where(train_s.labels >= 0, train_s.labels, len(names))
        keep = stratified_subset(strat, cfg.max_train_samples, cfg.seed)
        train_s = train_s.select(keep)
    return splits, train_s, names


def _training_model(
    cfg: TrainConfig, names: tuple[str, ...], device: torch.device, ctx: distributed.DistContext
) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor], torch.optim.Optimizer]:
    """The model (built, or warm-started from ``cfg.init_from``), what the training step calls
    (the model under DDP and ``torch.compile`` when on) and its optimiser."""
    if cfg.init_from:
        model = init_model(cfg, names).to(device)  # base weights, head mapped to `names`
    else:
        model = build_model(cfg, names).to(device)
    if cfg.channels_last:
        # Module.to takes memory_format at run time; torch's overloads do not declare it.
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    if ctx.enabled:
        model = distributed.sync_batchnorm(model, device)  # BatchNorm over the global batch, as one process
    # DDP averages the gradients across ranks (and broadcasts rank 0's weights at the start);
    # evaluation and checkpoints use `model` itself.
    fwd: Callable[[torch.Tensor], torch.Tensor] = (
        distributed.wrap(model, ctx, device, find_unused=cfg.freeze != "none") if ctx.enabled else model
    )
    fwd = torch.compile(fwd) if cfg.compile else fwd
    groups = param_groups(model, cfg)  # weight decay on weights only; per-stage "lr_scale" for fine-tuning
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
    return model, fwd, opt


def _training_tensors(cfg: TrainConfig, train_s: Split, k: int, device: torch.device) -> tuple[np.ndarray, _Tensors]:
    """The class weights of the loss and the training tensors on the device."""
    soft = train_s.targets.ndim == 2
    hard_lab = train_s.labels if not soft else np.where(train_s.labels >= 0, train_s.labels, train_s.targets.argmax(1))
    # Imbalance: static class weights, a per-sample drawing distribution, or per-sample
    # augmentation strength; "dynamic" weights start uniform and follow PublicTest recall.
    imb = imbalance_plan(cfg.imbalance, hard_lab, k, cb_beta=cfg.cb_beta, oversample_power=cfg.oversample_power)
    # The teacher's softened distribution per training row (T applied once, here).
    teacher = (
        torch.from_numpy(teacher_probs(cfg.teacher, train_s, k, cfg.kd_temperature)).to(device) if cfg.teacher else None
    )
    theta = found = None
    if cfg.align:
        theta_np, found_np = per_row("align", cfg.align, ("theta", "found"), train_s)
        if theta_np.shape[1:] != (2, 3):
            raise UserValueError(f"align {cfg.align}: theta of shape {theta_np.shape}; expected N x 2 x 3")
        theta = torch.from_numpy(theta_np.astype(np.float32)).to(device)
        found = torch.from_numpy(found_np.astype(bool)).to(device)
    tensors = _Tensors(
        x=torch.from_numpy(train_s.images).to(device),
        y=torch.from_numpy(train_s.targets).to(device),
        strength=torch.from_numpy(imb.strength).to(device),
        draw=imb.draw,
        teacher=teacher,
        theta=theta,
        found=found,
    )
    return imb.weights, tensors


def _start_state(run: _Run, resume: bool) -> None:
    """``run.state`` fresh, or (``resume``) the weights, optimiser and state of ``last.pt``;
    then the resolved config is written."""
    cfg = run.cfg
    run.state = {
        "epoch": 0,
        "best": -1.0,
        "best_epoch": -1,
        "since_best": 0,
        "plateau": 1.0,
        "plateau_bad": 0,
        "plateau_best": -1.0,
        "weights": run.weights.tolist(),
        "history": [],
    }
    requested = cfg.epochs
    if resume:

        def read_last() -> dict[str, Any]:
            if not run.last_path.is_file():
                raise UserFileNotFoundError(f"--resume: no {run.last_path} to resume from")
            return read_resume_checkpoint(run.last_path, run.model)  # a damaged or foreign last.pt: a named error

        ck = distributed.run_on_main(read_last, run.ctx)  # read by rank 0, sent to all: any world size resumes
        run.model.load_state_dict(ck["state_dict"])
        run.opt.load_state_dict(ck["optimizer"])
        run.state = ck["trainer_state"]
        cfg.epochs = _resumed_epochs(cfg.epochs, run.state, run.out)
        run.weights = np.asarray(run.state["weights"], dtype=np.float32)
    run.state["epochs_requested"] = requested
    run.state.setdefault("epoch_started", run.state["epoch"])
    if run.ctx.is_main:
        write_json_atomic(run.out / "config.json", cfg.to_dict())


def _check_schedule_learns(run: _Run) -> None:
    """A run whose every step falls in the warm-up at rate 0 is refused before it starts."""
    cfg, steps = run.cfg, run.steps
    if run.state["epoch"] < cfg.epochs and not any(
        _lr_factor(cfg, e + s / steps, 1.0) > 0 for e in range(run.state["epoch"], cfg.epochs) for s in range(steps)
    ):
        # e.g. one step in all: it falls at the start of the warm-up, where the rate is 0
        raise UserValueError(
            f"every optimiser step of this run ({steps} per epoch: {run.data.n} images / batch {cfg.batch_size}; "
            f"{cfg.epochs} epochs) falls in the learning-rate warm-up at rate 0, so it would learn "
            "nothing: use more images or epochs, a smaller batch, or warmup_epochs=0"
        )


def _open_log(run: _Run, resume: bool) -> IO[str] | None:
    """``metrics.jsonl`` opened for appending on rank 0 (None on the others): a resume first
    trims it to the epochs ``last.pt`` holds, a fresh run starts it empty."""
    log_path = run.out / "metrics.jsonl"
    main = run.ctx.is_main
    if main and resume and log_path.is_file():
        kept = [
            ln
            for ln in log_path.read_text().splitlines()
            if ln.strip() and json.loads(ln)["epoch"] <= run.state["epoch"]
        ]
        write_text_atomic(log_path, "".join(ln + "\n" for ln in kept))
    elif main and not resume:
        log_path.unlink(missing_ok=True)  # a fresh run in an old directory starts a fresh log
    return open(log_path, "a") if main else None


def _train_epoch(run: _Run, epoch: int) -> _EpochStats:
    """One pass over the training data: ``run.steps`` optimiser steps."""
    cfg, ctx, device = run.cfg, run.ctx, run.device
    # Every source of randomness is re-seeded from (seed, epoch): resuming at an epoch
    # boundary replays exactly what an uninterrupted run would have done.
    # The global RNG (dropout) differs between ranks; g and gcpu, which decide the batches
    # and their augmentation, are the same on every rank.
    torch.manual_seed(cfg.seed * 100003 + epoch + ctx.rank * 1_000_003)
    g = torch.Generator(device=device).manual_seed(cfg.seed * 100003 + epoch)
    gcpu = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
    n, steps = run.data.n, run.steps
    if run.data.draw is None:
        order = torch.randperm(n, generator=gcpu)
    else:
        order = torch.multinomial(torch.from_numpy(run.data.draw), n, replacement=True, generator=gcpu)
    w_t = torch.tensor(run.weights, device=device)
    run.model.train()
    if cfg.freeze != "none":
        apply_freeze(run.model, frozen=cfg.freeze_epochs is None or epoch < cfg.freeze_epochs)
    tot_loss = tot_correct = tot_seen = 0.0
    t0 = time.time()
    bar = progress_bar(
        range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", enabled=cfg.progress and ctx.is_main
    )
    for step in bar:
        lr = cfg.lr * _lr_factor(cfg, epoch + step / steps, run.state["plateau"])
        for grp in run.opt.param_groups:
            grp["lr"] = lr * grp.get("lr_scale", 1.0)
        gidx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]  # the global batch
        rows = distributed.shard_rows(len(gidx), ctx)  # this rank's share of it (all of it alone)
        x, y, tb = _batch(run, gidx, rows, g)
        logits, loss = _step(run, x, y, tb, w_t, len(gidx))
        loss_value = float(loss.detach())
        if not ctx.enabled:  # under torchrun every rank decides below, on the reduced sum
            _check_loss(loss_value, epoch, step, cfg)
        tot_loss += loss_value * len(gidx) / ctx.world_size  # summed over ranks: the global batch's
        hard = y if y.ndim == 1 else y.argmax(1)
        tot_correct += float((logits.argmax(1) == hard).sum())
        tot_seen += len(rows)
        if step % 10 == 0:
            bar.set_postfix(
                loss=f"{tot_loss / tot_seen:.3f}",
                acc=f"{tot_correct / tot_seen:.3f}",
                ips=f"{tot_seen / (time.time() - t0):.0f}",
                lr=f"{lr:.4f}",
            )
    bar.close()
    train_time = time.time() - t0
    if ctx.enabled:
        tots = distributed.all_reduce(torch.tensor([tot_loss, tot_correct, tot_seen], dtype=torch.float64), ctx)
        tot_loss, tot_correct, tot_seen = (float(v) for v in tots)
    _check_loss(tot_loss, epoch, None, cfg)  # the same on every rank: they all stop together
    return _EpochStats(tot_loss, tot_correct, tot_seen, lr, t0, train_time)


def _batch(
    run: _Run, gidx: torch.Tensor, rows: torch.Tensor, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """This rank's rows ``rows`` of the global batch ``gidx``, augmented and normalised: the
    images, their targets and the teacher's distributions (None without a teacher). Every draw
    from ``g`` is made for the whole global batch, so ``g`` stays in step on every rank."""
    cfg, ctx, device, pre, d = run.cfg, run.ctx, run.device, run.pre, run.data
    idx = gidx[rows].to(device)
    x = to_unit(d.x[idx], pre)  # the inference preprocessing, split around the augmentation
    if d.theta is not None and d.found is not None:
        # drawn for the whole global batch (g stays in step on every rank), this rank's rows kept
        coin = torch.rand(len(gidx), device=device, generator=g)[rows.to(device)]
        x = aligned_views(x, d.theta[idx], (coin < cfg.align_p) & d.found[idx])
    x = augment(x, cfg.augment, g, d.strength[idx], rows=rows if ctx.enabled else None, total=len(gidx))
    y = d.y[idx]
    if cfg.targets == "ferplus-probability" and ctx.enabled:
        # drawn for the whole global batch, so that g stays in step on every rank
        y = torch.multinomial(d.y[gidx.to(device)].float(), 1, generator=g)[rows.to(device), 0]
    elif cfg.targets == "ferplus-probability":
        # Probabilistic label drawing (Barsoum et al.): a fresh label from the vote distribution.
        y = torch.multinomial(y.float(), 1, generator=g)[:, 0]
    tb = d.teacher[idx] if d.teacher is not None else None
    if cfg.augment.mixup > 0 and cfg.targets != "ferplus-multilabel":
        k = run.k
        yy = F.one_hot(y, k).float() if y.ndim == 1 else y.float()
        if tb is not None:  # mixing is linear: the teacher's distributions mix with the labels
            yy = torch.cat([yy, tb], 1)
        x, yy = mix(x, yy, cfg.augment, g)
        y, tb = (yy[:, :k], yy[:, k:]) if tb is not None else (yy, None)
    x = normalize(x, pre)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y, tb


def _step(
    run: _Run, x: torch.Tensor, y: torch.Tensor, tb: torch.Tensor | None, w_t: torch.Tensor, n_global: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on a batch; its logits (float) and loss."""
    cfg = run.cfg
    with autocast(run.device, cfg.amp):
        logits = run.fwd(x)
    logits = logits.float()
    loss = compute_loss(cfg, logits, y, w_t)
    if tb is not None:
        loss = cfg.kd_alpha * kd_loss(logits, tb, cfg.kd_temperature) + (1 - cfg.kd_alpha) * loss
    if run.ctx.enabled:
        loss = loss * _rank_loss_scale(cfg, y, w_t, n_global, run.ctx)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.opt.step()
    return logits, loss


def _validate(run: _Run, epoch: int, stats: _EpochStats) -> tuple[dict[str, Any], dict[str, Any]]:
    """The epoch's log record and its PublicTest metrics (model selection: PublicTest only)."""
    val = run.splits["PublicTest"]
    vm = basic_metrics(val.labels, _predict(run.model, val.images, run.device, run.ctx, run.cfg.progress), run.k)
    rec = {
        "epoch": epoch + 1,
        "train_loss": stats.loss / stats.seen,
        "train_acc": stats.correct / stats.seen,
        "val_accuracy": vm["accuracy"],
        "val_macro_f1": vm["macro_f1"],
        "val_recall": vm["recall"],
        "lr": stats.lr,
        "class_weights": [float(w) for w in run.weights],
        "images_per_s": stats.seen / stats.train_time,
        "epoch_seconds": time.time() - stats.t0,
    }
    return rec, vm


def _fit_budget(run: _Run, epoch: int, done: int, t0: float, budget_cap: int) -> None:
    """``cfg.epochs`` sized to the time budget after ``done`` epochs of this call (the epoch
    ``epoch`` began at ``t0``)."""
    cfg = run.cfg
    # Size the run to the budget after the first epoch, and again after epochs 2, 4, 8 and
    # 16 at the mean pace of the epochs after the first. The first pays one-off costs
    # (allocator and kernel warm-up, other jobs starting on a shared GPU): alone it cut a
    # 7-minute run to 5; epoch 2 alone was 12% faster than the mean of the rest and an
    # 8-minute run took 9.0. Only in the first eighth of the run, where the cosine is
    # still near its top, so moving its end is seamless.
    now = time.time()
    pace = now - t0 if done == 1 else (now - run.t_first) / (done - 1)
    pace, elapsed = (
        float(v) for v in distributed.all_reduce(torch.tensor([pace, now - run.t_start]), run.ctx, op="max")
    )  # the same on all ranks
    assert cfg.time_budget_minutes is not None  # only called under a budget
    cfg.epochs = budget_epochs(cfg.time_budget_minutes, elapsed, pace, epoch + 1, budget_cap, first=done == 1)
    tqdm.write(f"time budget {cfg.time_budget_minutes} min: running {cfg.epochs} epochs")


def _end_epoch(
    run: _Run,
    epoch: int,
    rec: dict[str, Any],
    vm: dict[str, Any],
    budget_cap: int,
    log_f: IO[str] | None,
    *,
    t0: float,
) -> bool:
    """After epoch ``epoch``: the time budget, the schedule and class weights that follow
    PublicTest, ``best.pt`` when it improved, the log line and ``last.pt``. True: stop early."""
    cfg, state, main = run.cfg, run.state, run.ctx.is_main
    score = vm[cfg.select_metric]
    done = epoch + 1 - state["epoch_started"]
    if done == 1:
        run.t_first = time.time()
    if cfg.time_budget_minutes and done in (1, 2, 4, 8, 16) and (done <= 2 or done <= cfg.epochs // 8):
        _fit_budget(run, epoch, done, t0, budget_cap)
    if cfg.imbalance == "dynamic":
        run.weights = dynamic_weights(np.asarray(vm["recall"]), run.weights)
    if cfg.schedule == "plateau":
        if score > state["plateau_best"] + 1e-4:
            state["plateau_best"], state["plateau_bad"] = score, 0
        else:
            state["plateau_bad"] += 1
            if state["plateau_bad"] >= cfg.plateau_patience:
                state["plateau"] *= cfg.plateau_factor
                state["plateau_bad"] = 0
    improved = score > state["best"]
    if improved:
        state.update(best=score, best_epoch=epoch + 1, since_best=0)
        if main:
            save_atomic(
                make_checkpoint(
                    run.model,
                    train_config=cfg.to_dict(),
                    epoch=epoch + 1,
                    metrics={"PublicTest": {"accuracy": vm["accuracy"], "macro_f1": vm["macro_f1"]}},
                ),
                run.best_path,
            )
    else:
        state["since_best"] += 1
    state["epoch"] = epoch + 1
    state["epochs"] = cfg.epochs
    state["weights"] = [float(w) for w in run.weights]
    state["history"].append({k2: rec[k2] for k2 in ("epoch", "val_accuracy", "val_macro_f1")})
    # Log first, then last.pt: a crash in between re-runs this epoch on resume, and the
    # resume trims the log back to what last.pt holds.
    if main and log_f is not None:
        log_f.write(json.dumps(rec) + "\n")
        log_f.flush()
        save_atomic(
            make_checkpoint(
                run.model,
                train_config=cfg.to_dict(),
                epoch=epoch + 1,
                optimizer=run.opt.state_dict(),
                trainer_state=state,
            ),
            run.last_path,
        )
        tqdm.write(
            f"epoch {epoch + 1}/{cfg.epochs} loss {rec['train_loss']:.4f} train_acc {rec['train_acc']:.4f} "
            f"PublicTest acc {vm['accuracy']:.4f} macro-F1 {vm['macro_f1']:.4f} {rec['images_per_s']:.0f} img/s"
            f"{' *' if improved else ''}"
        )
    if cfg.early_stopping and state["since_best"] >= cfg.early_stopping:  # the same decision on every rank
        if main:
            tqdm.write(f"early stopping: no PublicTest improvement for {cfg.early_stopping} epochs")
        return True
    return False


def _finish(run: _Run) -> dict[str, Any]:
    """The one PrivateTest evaluation, with the weights chosen on PublicTest (rank 0 alone:
    best.pt is on its file system); ``final.json`` and the final metrics in ``best.pt``."""
    cfg = run.cfg
    write_json_atomic(run.out / "config.json", cfg.to_dict())  # with the resolved epoch count
    final: dict[str, Any] = {
        "best_epoch": run.state["best_epoch"],
        "epochs_run": run.state["epoch"],
        "parameters": count_parameters(run.model),
        "wall_seconds": time.time() - run.t_start,
        "device": str(run.device),
        "world_size": run.ctx.world_size,
    }
    ck = torch.load(run.best_path, map_location="cpu", weights_only=True)
    run.model.load_state_dict(ck["state_dict"])
    for split in ("PublicTest", "PrivateTest"):
        if split not in run.splits or (split == "PrivateTest" and not cfg.eval_private):
            continue
        s = run.splits[split]
        logits = tta_logits(run.model, s.images, "none", run.device, batch_size=512, progress=cfg.progress)
        pred = logits.argmax(1).numpy()
        final[split] = basic_metrics(s.labels, pred, run.k)
    ck["metrics"] = {s: final[s] for s in ("PublicTest", "PrivateTest") if s in final}
    save_atomic(ck, run.best_path)
    write_json_atomic(run.out / "final.json", final)
    return final
