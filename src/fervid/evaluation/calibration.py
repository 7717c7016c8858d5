"""Calibration: temperature scaling, expected calibration error, reliability bins,
ensemble weights, and writing a calibrated copy of a checkpoint.

Everything that is *fitted* here is fitted on PublicTest (the validation split) by the
callers in :mod:`fervid.evaluation.evaluate`; PrivateTest is only ever scored.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fervid.data.datasets import load_dataset
from fervid.data.ferplus import align, distribution, load_ferplus
from fervid.data.ferplus import targets as ferplus_targets
from fervid.errors import UserValueError
from fervid.evaluation.ambiguity import model_votes
from fervid.inference.logits import align_columns, tta_logits
from fervid.models import model_preprocess, model_temperature
from fervid.models.checkpoint import load_checkpoint, load_model, save_atomic, save_safetensors_checkpoint
from fervid.runtime import resolve_device, softmax
from fervid.safety import check_not_input, preflight_output

ECE_BINS = 15


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE with ``n_bins`` equal-width confidence bins: sum over bins of
    (bin share) x |accuracy - mean confidence|."""
    b = reliability_bins(probs, y_true, n_bins)
    n = b["count"].sum()
    if n == 0:
        return float("nan")
    return float(np.sum(b["count"] / n * np.abs(b["accuracy"] - b["confidence"])))


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per confidence bin (equal width on [0, 1]): image count, mean confidence and accuracy
    (0 for empty bins). Bin ``i`` holds confidences in ``(edges[i], edges[i+1]]``."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true)
    conf = probs.max(1)
    correct = (probs.argmax(1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    s_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    s_acc = np.bincount(idx, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, s_conf / count, 0.0)
        acc = np.where(count > 0, s_acc / count, 0.0)
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": acc}


def nll(logits: np.ndarray | torch.Tensor, y_true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)``."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64) / float(temperature)
    return float(torch.nn.functional.cross_entropy(z, torch.as_tensor(np.asarray(y_true), dtype=torch.long)))


def fit_temperature(logits: np.ndarray | torch.Tensor, y_true: np.ndarray, max_iter: int = 200) -> float:
    """The temperature ``T > 0`` minimising the NLL of ``softmax(logits / T)`` (LBFGS on ``log T``).

    Fit on a validation split (PublicTest), never on the split you report.
    """
    y = torch.as_tensor(np.asarray(y_true), dtype=torch.long)
    if len(y) == 0:
        raise UserValueError("cannot fit a temperature on zero images")
    if (y < 0).any():
        raise UserValueError("labels must be class indices >= 0 (drop unlabelled images first)")
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    return _fit_temperature(lambda t: torch.nn.functional.cross_entropy(z / t, y), max_iter)


def _fit_temperature(loss_at: Callable[[torch.Tensor], torch.Tensor], max_iter: int) -> float:
    """Minimise ``loss_at(T)`` over ``T > 0`` (parameterised as ``exp(log T)``; LBFGS)."""
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_at(log_t.exp())
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not np.isfinite(t) or t <= 0:
        raise RuntimeError(f"temperature fit diverged (T={t})")
    return t


def fit_temperature_to_distribution(
    logits: np.ndarray | torch.Tensor, target: np.ndarray, max_iter: int = 200
) -> float:
    """The temperature ``T > 0`` minimising the cross-entropy of ``softmax(logits / T)``
    against soft targets ``target`` (``N x K`` rows summing to 1), i.e. the mean
    KL(target || model) up to a constant.

    For models trained on crowd votes (FER+): fitted to the vote distribution, the
    probabilities (and their entropy, the ambiguity score) match how the annotators split,
    where a fit to the majority label alone would sharpen them towards one-hot.
    """
    q = torch.as_tensor(np.asarray(target), dtype=torch.float64)
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    if len(q) == 0:
        raise UserValueError("cannot fit a temperature on zero images")
    if q.shape != z.shape:
        raise UserValueError(f"target must match the logits' shape {tuple(z.shape)}, got {tuple(q.shape)}")
    if (q < 0).any() or not torch.allclose(q.sum(1), torch.ones(len(q), dtype=torch.float64), atol=1e-4):
        raise UserValueError("target rows must be non-negative and sum to 1 (a distribution per image)")
    return _fit_temperature(lambda t: -(q * torch.log_softmax(z / t, 1)).sum(1).mean(), max_iter)


def fit_ensemble_weights(member_probs: Sequence[np.ndarray], y_true: np.ndarray, max_iter: int = 200) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise the NLL of ``sum_m w_m p_m``
    (softmax-parameterised, LBFGS). Fit on PublicTest, never on the reported split."""
    if len(member_probs) == 0:
        raise UserValueError("no ensemble members")
    p = torch.as_tensor(np.stack([np.asarray(m, dtype=np.float64) for m in member_probs]))  # M x N x K
    y = torch.as_tensor(np.asarray(y_true), dtype=torch.long)
    if len(member_probs) == 1:
        return np.ones(1)
    pt = p[:, torch.arange(len(y)), y].clamp_min(1e-12)  # M x N: each member's probability of the true class
    a = torch.zeros(len(member_probs), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        w = torch.softmax(a, 0)
        loss = -torch.log((w[:, None] * pt).sum(0)).mean()
        loss.backward()
        return loss

    opt.step(closure)
    return torch.softmax(a.detach(), 0).numpy()


# ------------------------------------------------------------- calibrated checkpoints


def write_calibrated_checkpoint(
    name_or_path: str | os.PathLike, temperature: float, out: str | os.PathLike, info: dict[str, Any] | None = None
) -> Path:
    """Write a copy of a checkpoint with ``"temperature"`` set (and ``"calibration"``: how
    it was fitted). ``out`` ending in ``.safetensors`` writes that format, else a ``.pt``
    dict. :func:`fervid.models.checkpoint.load_model` reads the temperature back."""
    if not (temperature > 0 and np.isfinite(temperature)):
        raise UserValueError(f"temperature must be a positive number, got {temperature}")
    check_not_input(out, [name_or_path], "the calibrated checkpoint")
    ckpt = load_checkpoint(name_or_path)
    ckpt = {k: v for k, v in ckpt.items() if k not in ("optimizer", "trainer_state", "source")}
    ckpt["temperature"] = float(temperature)
    ckpt["calibration"] = {"method": "temperature", **(info or {})}
    out = Path(out)
    if out.suffix == ".safetensors":
        save_safetensors_checkpoint(ckpt, out)
    else:
        save_atomic(ckpt, out)
    return out


def calibrate(
    model: str | os.PathLike,
    data: str | os.PathLike | Any,
    out: str | os.PathLike,
    *,
    split: str = "PublicTest",
    tta: str = "none",
    device: str = "auto",
    batch_size: int = 256,
    ferplus: str | os.PathLike | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Fit the temperature of ``model`` on ``split`` (PublicTest) of ``data`` (a path or a
    loaded ``FERData``) and write the calibrated checkpoint to ``out``. Returns the fitted
    temperature with the NLL and ECE on the fit split before and after. ``progress``: a bar
    over the scored faces (:func:`fervid.runtime.progress_bar`).

    ``ferplus`` (``fer2013new.csv``; ``data`` must be the FER2013 CSV): fit to the FER+
    vote distribution instead of the FER2013 labels (:func:`fit_temperature_to_distribution`),
    over the split's images with a FER+ majority label (the FER+ test protocol), with all
    of the model's classes (``contempt`` included). Reported then: the mean
    KL(votes || model) before and after, and NLL/ECE against the FER+ majority label."""
    check_not_input(out, [model, data, ferplus], "--out")  # before any work
    preflight_output(out)
    dev = resolve_device(device)
    d = load_dataset(data) if isinstance(data, (str, os.PathLike)) else data
    if ferplus is not None and d.files is not None:
        raise UserValueError(
            "calibrating against FER+ votes needs the FER2013 CSV as data (its rows line up with "
            "fer2013new.csv), not an image folder"
        )
    if split not in d.split_names:
        raise UserValueError(f"split {split!r} not in {d.source}; present: {d.split_names}")
    s = d.split(split)
    m = load_model(model, device=dev)
    t0 = model_temperature(m)
    extra: dict[str, Any] = {}
    if ferplus is None:
        s = s.select(s.labels >= 0)
        cols = align_columns(model_preprocess(m).labels, d.label_names)
        logits = tta_logits(m, s.images, tta, device=dev, batch_size=batch_size, progress=progress).numpy()[:, cols]
        y = s.labels.astype(np.int64)
        t = fit_temperature(logits, y)
    else:
        # the model's label order, emotions it lacks dropped; images with a FER+ majority only
        v = model_votes(align(s, load_ferplus(ferplus)), tuple(model_preprocess(m).labels))
        y, keep = ferplus_targets(v, "majority")
        s, v, y = s.select(keep), v[keep], y[keep]
        q = distribution(v).astype(np.float64)
        logits = (
            tta_logits(m, s.images, tta, device=dev, batch_size=batch_size, progress=progress)
            .numpy()
            .astype(np.float64)
        )
        t = fit_temperature_to_distribution(logits, q)

        def kl(temp: float) -> float:
            logp = torch.log_softmax(torch.as_tensor(logits) / temp, 1).numpy()
            safe = np.where(q > 0, q, 1.0)
            return float((q * (np.log(safe) - logp)).sum(1).mean())

        extra = {"target": "FER+ vote distribution", "kl_before": kl(t0), "kl_after": kl(t)}
    info: dict[str, Any] = {
        "temperature": t,
        "previous_temperature": t0,
        "fit_split": split,
        "fit_images": int(len(y)),
        "tta": tta,
        **extra,
        "nll_before": nll(logits, y, t0),
        "nll_after": nll(logits, y, t),
        "ece_before": expected_calibration_error(softmax(logits, t0), y),
        "ece_after": expected_calibration_error(softmax(logits, t), y),
    }
    record = {"fit": split, "tta": tta, "fit_data": str(getattr(d, "source", data))}
    if ferplus is not None:
        record.update(target="FER+ vote distribution", ferplus=str(ferplus))
    record.update({k: v for k, v in info.items() if k.endswith(("_before", "_after"))})
    info["out"] = str(write_calibrated_checkpoint(model, t, out, record))
    return info
