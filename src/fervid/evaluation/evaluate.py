"""Evaluation: metrics, test-time augmentation, ensembles, calibration and the report.

Protocol. The reported split (``PrivateTest`` by default) is only scored. Anything that
is fitted -- ensemble weights (``ensemble="weighted"``) and temperatures
(``calibrate=True``) -- is fitted on ``fit_split`` (``PublicTest``) of ``fit_data``
(default: the evaluated data). Evaluating the fit split itself with a fitted option is
refused, since the numbers would be optimistic.

Classes. Metrics are in the data's vocabulary (FER2013 order). Images whose class lies
outside it (label -1, e.g. a ``contempt`` folder) are counted in ``excluded`` and left
out. Per-class numbers and macro/weighted F1 cover only the classes present in the
evaluated images (scikit-learn ``labels=``); the confusion matrix keeps the whole
vocabulary so that ``accuracy == trace / total`` always holds.

Outputs in ``out``: ``metrics.json``, ``predictions.csv`` (per-image probabilities),
``predictions.npz`` (the same plus each member's logits), ``report.html`` and, with
``calibrate=True``, calibrated checkpoint copies in ``calibrated/``.
"""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fervid.data.datasets import load_dataset, load_image_folder, relabel, stratified_subset
from fervid.data.ferplus import align, load_ferplus
from fervid.errors import UserValueError
from fervid.evaluation.ambiguity import ferplus_metrics
from fervid.evaluation.calibration import (
    ECE_BINS,
    expected_calibration_error,
    fit_ensemble_weights,
    fit_temperature,
    nll,
    write_calibrated_checkpoint,
)
from fervid.evaluation.report import write_report
from fervid.inference.adapt import adabn
from fervid.inference.backends import check_distinct_models
from fervid.inference.logits import align_columns, tta_logits
from fervid.inference.options import TTA_MODES
from fervid.models import count_parameters, model_preprocess, model_temperature
from fervid.models.checkpoint import bundled_models, file_sha256, load_model
from fervid.runtime import progress_stage, resolve_device, softmax
from fervid.safety import atomic_write, json_safe, make_dir, preflight_output, write_json_atomic

ENSEMBLE_MODES: tuple[str, ...] = ("mean", "weighted")


@dataclass
class EvalConfig:
    """What to evaluate and how (the CLI flags of ``fervid evaluate``)."""

    models: list[str]
    data: str
    split: str | None = None  # a split name, "all", or None: PrivateTest when the data has it, else all
    tta: str = "none"  # none | flip | crops
    ensemble: str = "mean"  # mean | weighted (weights fitted on fit_split)
    out: str | None = None
    device: str = "auto"
    batch_size: int = 256
    amp: bool = False
    calibrate: bool = False  # fit a temperature per model on fit_split
    fit_split: str = "PublicTest"
    fit_data: str | None = None  # data holding fit_split (default: data)
    ferplus: str | None = None  # fer2013new.csv: FER+ metrics on the evaluated rows
    adabn: bool = False  # test-time BatchNorm adaptation on each scored image set
    max_images: int | None = None  # stratified subset of the evaluated (and fit) images
    seed: int = 0  # for max_images
    report: bool = True
    progress: bool = False  # a bar over the scored faces (fervid.runtime.progress_bar)

    def validate(self) -> None:
        if not self.models:
            raise UserValueError("no model given")
        check_distinct_models([str(m) for m in self.models], f"models {list(map(str, self.models))}")
        if self.tta not in TTA_MODES:
            raise UserValueError(f"tta must be one of {TTA_MODES}, got {self.tta!r}")
        if self.ensemble not in ENSEMBLE_MODES:
            raise UserValueError(f"ensemble must be one of {ENSEMBLE_MODES}, got {self.ensemble!r}")
        if self.max_images is not None and self.max_images < 1:
            raise UserValueError("max_images must be >= 1")

    @property
    def fits(self) -> bool:
        """Whether anything is fitted on ``fit_split``."""
        return self.calibrate or (self.ensemble == "weighted" and len(self.models) > 1)


@dataclass
class EvalResult:
    """Everything an evaluation computed (``metrics`` is what ``metrics.json`` holds)."""

    metrics: dict[str, Any]
    labels: tuple[str, ...]
    y_true: np.ndarray
    probs: np.ndarray  # N x K, final (ensembled, calibrated if asked)
    probs_uncalibrated: np.ndarray | None
    member_logits: list[np.ndarray]  # per model, N x K (data vocabulary)
    images: np.ndarray
    index: np.ndarray
    files: np.ndarray | None
    paths: dict[str, Path] = field(default_factory=dict)


# ------------------------------------------------------------------------ metrics


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str], n_bins: int = ECE_BINS
) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, per-class precision/recall/F1/support, confusion matrix,
    top-2 accuracy, NLL and ECE for probabilities ``N x K`` (scikit-learn throughout)."""
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
        top_k_accuracy_score,
    )

    y_true = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(labels)
    if probs.ndim != 2 or probs.shape != (len(y_true), k):
        raise UserValueError(f"probs must be N x {k} for {len(y_true)} labels, got {probs.shape}")
    if len(y_true) == 0:
        raise UserValueError("no images to evaluate")
    if y_true.min() < 0 or y_true.max() >= k:
        raise UserValueError("y_true must hold class indices in 0..K-1 (drop out-of-vocabulary images first)")
    pred = probs.argmax(1)
    present = sorted(int(c) for c in np.unique(y_true))
    all_k = list(range(k))
    p, r, f, s = precision_recall_fscore_support(y_true, pred, labels=present, zero_division=0)
    cm = confusion_matrix(y_true, pred, labels=all_k)
    return {
        "accuracy": float(accuracy_score(y_true, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
        "macro_f1": float(f1_score(y_true, pred, labels=present, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, pred, labels=present, average="weighted", zero_division=0)),
        "top2_accuracy": float(top_k_accuracy_score(y_true, probs, k=2, labels=all_k)),
        "nll": float(log_loss(y_true, probs, labels=all_k)),
        "ece": expected_calibration_error(probs, y_true, n_bins),
        "ece_bins": n_bins,
        "per_class": {
            labels[c]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(present)
        },
        "classes_present": [labels[c] for c in present],
        "confusion_matrix": {
            "labels": list(labels),
            "rows": "true class",
            "columns": "predicted class",
            "counts": cm.astype(int).tolist(),
        },
    }


# ------------------------------------------------------------------------ helpers


def model_identity(name_or_path: str, model: Any) -> dict[str, Any]:
    """How to recognise a model later: file sha256 (bundled: the manifest's), architecture,
    labels, temperature and its training summary where the checkpoint has one."""
    p = Path(name_or_path)
    bundled = bundled_models()
    if p.is_file():
        ident: dict[str, Any] = {
            "name": p.stem if p.stem not in ("best", "last") else f"{p.parent.name}/{p.stem}",
            "source": str(p.resolve()),
            "sha256": file_sha256(p),
        }
    elif name_or_path in bundled:
        ident = {
            "name": name_or_path,
            "source": f"bundled:{bundled[name_or_path].file}",
            "sha256": bundled[name_or_path].sha256,
        }
    else:
        ident = {"name": str(name_or_path), "source": str(name_or_path), "sha256": None}
    meta = getattr(model, "checkpoint_meta", {}) or {}
    tc = meta.get("train_config") or {}
    ident.update(
        {
            "architecture": meta.get("model", getattr(model, "model_name", None)),
            "parameters": count_parameters(model),
            "labels": list(model.preprocess.labels),
            "stored_temperature": float(getattr(model, "temperature", 1.0)),
            "epoch": meta.get("epoch"),
            "train": {
                k: tc[k] for k in ("model", "imbalance", "targets", "epochs", "max_train_samples", "seed") if k in tc
            },
        }
    )
    return ident


def _unique_names(idents: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for ident in idents:
        n = ident["name"]
        if n in seen:
            seen[n] += 1
            ident["name"] = f"{n}#{seen[n]}"
        else:
            seen[n] = 0


def _select(data: Any, split: str) -> Any:
    if split == "all":
        return data
    return data.split(split)


def _subset(labels: np.ndarray, max_images: int | None, seed: int) -> np.ndarray:
    idx = np.arange(len(labels))
    if max_images is None or max_images >= len(labels):
        return idx
    return stratified_subset(labels, max_images, seed)


def model_vocabulary(data: Any, models: list[Any], path: str | None = None) -> Any:
    """``data`` re-expressed in the models' label set when the models cannot score the
    data's vocabulary (a fine-tuned model with its own labels, e.g. 3 classes): an image
    folder is re-read with the model's class names, a CSV relabelled; images of other
    classes get label -1 and are reported as excluded. Unchanged when every model covers
    the data's classes or the models disagree on their labels."""
    vocab = [tuple(m.preprocess.labels) for m in models]
    try:
        for v in vocab:
            align_columns(v, data.label_names)
        return data
    except ValueError:
        if any(v != vocab[0] for v in vocab):
            return data  # mixed label sets: align_columns names the problem later
    if data.files is not None and path and Path(path).is_dir():
        return load_image_folder(path, label_names=vocab[0])
    return relabel(data, vocab[0])


def _excluded_classes(d: Any) -> dict[str, int]:
    """Images with label -1, counted by their class folder (or "unlabelled")."""
    out: dict[str, int] = {}
    for i in np.flatnonzero(d.labels < 0):
        name = Path(str(d.files[i])).parent.name if d.files is not None else "unlabelled"
        out[name] = out.get(name, 0) + 1
    return out


def _scored_logits(model: Any, images: np.ndarray, cfg: EvalConfig, device: Any) -> np.ndarray:
    m = model
    if cfg.adabn:
        m = adabn(model, images, batch_size=cfg.batch_size, progress=cfg.progress)
    return tta_logits(
        m, images, cfg.tta, device=device, batch_size=cfg.batch_size, amp=cfg.amp, progress=cfg.progress
    ).numpy()


def evaluate(cfg: EvalConfig, *, data: Any | None = None, fit_data: Any | None = None, log: Any = print) -> EvalResult:
    """Score ``cfg.models`` (one, or an ensemble) on ``cfg.split`` of ``cfg.data`` and, when
    ``cfg.out`` is set, write metrics, predictions and the report. ``data``/``fit_data``
    may be passed already loaded (``FERData``)."""
    cfg.validate()
    if cfg.out:
        preflight_output(cfg.out, folder=True)  # a bad --out fails now, not after the scoring
    t0 = time.time()
    device = resolve_device(cfg.device)
    data = data if data is not None else load_dataset(cfg.data)
    models = [load_model(m, device=device) for m in cfg.models]
    data = model_vocabulary(data, models, cfg.data)
    labels = tuple(data.label_names)
    cfg, same_source = _resolve_split(cfg, data)
    assert cfg.split is not None  # decided by _resolve_split
    ev = _select(data, cfg.split)
    excluded = _excluded_classes(ev)
    ev = ev.select(ev.labels >= 0)
    if len(ev) == 0:
        raise UserValueError(f"no images with a class in the vocabulary {list(labels)} in split {cfg.split!r}")
    ev = ev.select(_subset(ev.labels, cfg.max_images, cfg.seed))
    y = ev.labels.astype(np.int64)

    idents = [model_identity(name, m) for name, m in zip(cfg.models, models)]
    _unique_names(idents)
    cols = [align_columns(model_preprocess(m).labels, labels) for m in models]
    log(
        f"evaluating {len(models)} model(s) on {len(ev)} images ({cfg.split}), tta={cfg.tta}"
        + (f", ensemble={cfg.ensemble}" if len(models) > 1 else "")
        + (", adabn" if cfg.adabn else "")
    )
    full_logits = [_scored_logits(m, ev.images, cfg, device) for m in models]
    logits = [fl[:, c] for fl, c in zip(full_logits, cols)]

    # Fitting on the fit split (PublicTest): temperatures and ensemble weights.
    stored_t = [model_temperature(m) for m in models]
    temps = list(stored_t)
    fit_info: dict[str, Any] | None = None
    weights = np.full(len(models), 1.0 / len(models))
    if cfg.fits:
        fd = fit_data if fit_data is not None else (data if same_source else load_dataset(cfg.fit_data))  # type: ignore[arg-type]
        temps, weights, fit_info = _fit(cfg, fd, models, cols, idents, stored_t, device)

    member_probs = [softmax(lg, t) for lg, t in zip(logits, temps)]
    if cfg.ensemble == "mean" and len(models) > 1:
        from fervid.inference.backends import mean_probabilities

        probs = mean_probabilities(member_probs)  # THE mean ensemble, as ``--model A+B`` predicts
    else:
        probs = np.sum([w * p for w, p in zip(weights, member_probs)], axis=0)
    probs_before = None
    if cfg.calibrate:
        probs_before = np.sum([w * softmax(lg, t) for w, lg, t in zip(weights, logits, stored_t)], axis=0)

    with progress_stage("metrics", enabled=cfg.progress):  # sklearn's first import: 2-13 s
        scores = classification_metrics(y, probs, labels)
    metrics: dict[str, Any] = {
        "split": cfg.split,
        "images": int(len(ev)),
        "data": str(cfg.data or data.source),
        "tta": cfg.tta,
        "ensemble": cfg.ensemble if len(models) > 1 else "single",
        "ensemble_weights": [float(w) for w in weights],
        "adabn": cfg.adabn,
        "calibrated": cfg.calibrate,
        "temperatures": temps,
        "models": idents,
        "excluded": {"images": int(sum(excluded.values())), "by_class": excluded},
        **scores,
    }
    if cfg.max_images is not None:
        metrics["max_images"] = cfg.max_images
    if fit_info is not None:
        metrics["fit"] = fit_info
    if probs_before is not None:
        metrics["calibration"] = _calibration_change(cfg, y, probs_before, metrics, len(labels))
    if len(models) > 1:
        metrics["members"] = _member_metrics(y, idents, member_probs, labels)
    if cfg.ferplus:
        metrics["ferplus"] = _ferplus_metrics(cfg.ferplus, ev, models, full_logits, temps, weights, probs, labels)
    if cfg.adabn:
        metrics["adabn_note"] = (
            "BatchNorm statistics re-estimated on each scored image set (fervid.inference.adapt.adabn)"
        )
    metrics["seconds"] = round(time.time() - t0, 2)

    res = EvalResult(
        metrics=metrics,
        labels=labels,
        y_true=y,
        probs=probs,
        probs_uncalibrated=probs_before,
        member_logits=logits,
        images=ev.images,
        index=ev.index,
        files=ev.files,
    )
    if cfg.out:
        with progress_stage(f"writing {cfg.out}", enabled=cfg.progress):  # the report's plots: 10-20 s
            res.paths = write_outputs(res, cfg.out, report=cfg.report)
    return res


def _resolve_split(cfg: EvalConfig, data: Any) -> tuple[EvalConfig, bool]:
    """``cfg`` with its split decided (a folder without FER2013's split names is scored whole)
    and whether the fit data is the scored data; a split that is missing, or that contains the
    fit split, is refused."""
    if cfg.split is None:
        cfg = dataclasses.replace(cfg, split="PrivateTest" if "PrivateTest" in data.split_names else "all")
    if cfg.split != "all" and cfg.split not in data.split_names:
        raise UserValueError(
            f"split {cfg.split!r} not in {cfg.data or data.source}; present: {data.split_names} (or use 'all')"
        )
    same_source = cfg.fit_data is None or Path(cfg.fit_data).resolve() == Path(cfg.data).resolve()
    if (
        cfg.fits
        and same_source
        and (cfg.split == cfg.fit_split or (cfg.split == "all" and cfg.fit_split in data.split_names))
    ):
        what = "temperatures (--calibrate)" if cfg.calibrate else "ensemble weights (--ensemble weighted)"
        raise UserValueError(
            f"{what} are fitted on {cfg.fit_split}; refusing to report {cfg.split!r}, which contains it. "
            f"Report another split (e.g. PrivateTest) or fit on other data (--fit-data)."
        )
    return cfg, same_source


def _fit(
    cfg: EvalConfig,
    fd: Any,
    models: list[Any],
    cols: list[Any],
    idents: list[dict[str, Any]],
    stored_t: list[float],
    device: Any,
) -> tuple[list[float], np.ndarray, dict[str, Any]]:
    """Temperatures (``--calibrate``) and ensemble weights (``--ensemble weighted``) fitted on
    ``cfg.fit_split`` of ``fd``, and what was fitted, for the metrics."""
    if cfg.fit_split not in fd.split_names:
        raise UserValueError(
            f"fit split {cfg.fit_split!r} not in {fd.source}; present: {fd.split_names} "
            "(pass --fit-data fer2013.csv to fit on FER2013 PublicTest)"
        )
    fd = model_vocabulary(fd, models, cfg.fit_data or cfg.data)
    fs = fd.split(cfg.fit_split)
    fs = fs.select(fs.labels >= 0)
    fs = fs.select(_subset(fs.labels, cfg.max_images, cfg.seed))
    fy = fs.labels.astype(np.int64)
    fit_logits = [_scored_logits(m, fs.images, cfg, device)[:, c] for m, c in zip(models, cols)]
    fit_info: dict[str, Any] = {"split": cfg.fit_split, "data": str(cfg.fit_data or cfg.data), "images": int(len(fs))}
    temps = list(stored_t)
    weights = np.full(len(models), 1.0 / len(models))
    if cfg.calibrate:
        temps = [fit_temperature(fl, fy) for fl in fit_logits]
        fit_info["temperature"] = [
            {
                "model": i["name"],
                "stored": st,
                "fitted": t,
                "fit_nll_before": nll(fl, fy, st),
                "fit_nll_after": nll(fl, fy, t),
            }
            for i, st, t, fl in zip(idents, stored_t, temps, fit_logits)
        ]
    if cfg.ensemble == "weighted" and len(models) > 1:
        weights = fit_ensemble_weights([softmax(fl, t) for fl, t in zip(fit_logits, temps)], fy)
        fit_info["weights"] = {i["name"]: float(w) for i, w in zip(idents, weights)}
    return temps, weights, fit_info


def _calibration_change(
    cfg: EvalConfig, y: np.ndarray, probs_before: np.ndarray, metrics: dict[str, Any], k: int
) -> dict[str, Any]:
    """NLL and ECE before and after the fitted temperatures."""
    from sklearn.metrics import log_loss

    return {
        "method": "temperature scaling fitted on " + cfg.fit_split,
        "before": {
            "nll": float(log_loss(y, probs_before, labels=list(range(k)))),
            "ece": expected_calibration_error(probs_before, y),
        },
        "after": {"nll": metrics["nll"], "ece": metrics["ece"]},
    }


def _member_metrics(
    y: np.ndarray, idents: list[dict[str, Any]], member_probs: list[np.ndarray], labels: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Each ensemble member's own headline metrics."""
    out = []
    for ident, p in zip(idents, member_probs):
        m = classification_metrics(y, p, labels)
        out.append(
            {
                "name": ident["name"],
                **{k: m[k] for k in ("accuracy", "macro_f1", "weighted_f1", "top2_accuracy", "nll", "ece")},
            }
        )
    return out


def _ferplus_metrics(
    path: str,
    ev: Any,
    models: list[Any],
    full_logits: list[np.ndarray],
    temps: list[float],
    weights: np.ndarray,
    probs: np.ndarray,
    labels: tuple[str, ...],
) -> dict[str, Any]:
    """FER+ metrics (fervid.evaluation.ambiguity.ferplus_metrics) on the evaluated rows. Uses each model's
    full output (e.g. with ``contempt``) when all members share one vocabulary."""
    if ev.files is not None:
        raise UserValueError(
            "--ferplus needs the FER2013 CSV as --data (its rows line up with fer2013new.csv), not an image folder"
        )
    votes = align(ev, load_ferplus(path))
    model_labels = [tuple(m.preprocess.labels) for m in models]
    if all(ml == model_labels[0] for ml in model_labels):
        p = np.sum([w * softmax(fl, t) for w, fl, t in zip(weights, full_logits, temps)], axis=0)
        return ferplus_metrics(p, votes, model_labels[0])
    return ferplus_metrics(probs, votes, labels)


# ------------------------------------------------------------------------ outputs


def write_predictions(res: EvalResult, out: str | Path) -> tuple[Path, Path]:
    """``predictions.csv`` (one row per image: source row, file, true/predicted class,
    confidence, one probability column per class) and ``predictions.npz``."""
    out = Path(out)
    pred = res.probs.argmax(1)
    csv_path, npz_path = out / "predictions.csv", out / "predictions.npz"
    with atomic_write(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "row",
                "source_index",
                "file",
                "true",
                "true_label",
                "pred",
                "pred_label",
                "confidence",
                *[f"p_{c}" for c in res.labels],
            ]
        )
        for i in range(len(res.y_true)):
            w.writerow(
                [
                    i,
                    int(res.index[i]),
                    "" if res.files is None else str(res.files[i]),
                    int(res.y_true[i]),
                    res.labels[res.y_true[i]],
                    int(pred[i]),
                    res.labels[pred[i]],
                    f"{res.probs[i, pred[i]]:.6f}",
                    *[f"{v:.6f}" for v in res.probs[i]],
                ]
            )
    with atomic_write(npz_path) as f:
        np.savez_compressed(
            f,
            probs=res.probs.astype(np.float32),
            y_true=res.y_true,
            source_index=res.index,
            labels=np.asarray(res.labels),
            member_logits=np.stack(res.member_logits).astype(np.float32),
            temperatures=np.asarray(res.metrics["temperatures"]),
            weights=np.asarray(res.metrics["ensemble_weights"]),
        )
    return csv_path, npz_path


def write_outputs(res: EvalResult, out: str | Path, report: bool = True) -> dict[str, Path]:
    out = make_dir(out)
    paths: dict[str, Path] = {}
    paths["predictions_csv"], paths["predictions_npz"] = write_predictions(res, out)
    paths["metrics"] = write_json_atomic(out / "metrics.json", json_safe(res.metrics))  # an undefined metric: null
    if report:
        paths["report"] = write_report(res, out / "report.html")
    return paths


def write_calibrated(cfg: EvalConfig, res: EvalResult, out_dir: str | Path) -> list[Path]:
    """Copies of each evaluated checkpoint with the fitted temperature stored."""
    written = []
    for name, ident, t in zip(cfg.models, res.metrics["models"], res.metrics["temperatures"]):
        suffix = ".safetensors" if str(name).endswith(".safetensors") or not Path(name).is_file() else ".pt"
        dst = Path(out_dir) / (ident["name"].replace("/", "-").replace("#", "-") + "-calibrated" + suffix)
        info = {
            "fit": res.metrics.get("fit", {}).get("split"),
            "tta": cfg.tta,
            "fit_data": res.metrics.get("fit", {}).get("data"),
        }
        written.append(write_calibrated_checkpoint(name, t, dst, info))
    return written


def summary_table(metrics: dict[str, Any]) -> str:
    """A plain-text table: one row per member (for ensembles) and one for the result."""
    cols = ("accuracy", "macro_f1", "weighted_f1", "top2_accuracy", "nll", "ece")
    head = f"{'model':32s} " + " ".join(f"{c:>13s}" for c in cols)
    lines = [head, "-" * len(head)]
    for m in metrics.get("members", []):
        lines.append(f"{m['name'][:32]:32s} " + " ".join(f"{m[c]:13.4f}" for c in cols))
    name = "ensemble (" + metrics["ensemble"] + ")" if "members" in metrics else metrics["models"][0]["name"]
    lines.append(f"{name[:32]:32s} " + " ".join(f"{metrics[c]:13.4f}" for c in cols))
    info = [f"split {metrics['split']}, {metrics['images']} images, tta={metrics['tta']}"]
    if metrics["excluded"]["images"]:
        info.append(f"excluded (outside the vocabulary): {metrics['excluded']['by_class']}")
    if "calibration" in metrics:
        c = metrics["calibration"]
        info.append(
            f"calibration: temperature(s) {[round(t, 3) for t in metrics['temperatures']]}; "
            f"ECE {c['before']['ece']:.4f} -> {c['after']['ece']:.4f}, NLL {c['before']['nll']:.4f} -> {c['after']['nll']:.4f}"
        )
    if "ferplus" in metrics:
        info.append(
            "FER+: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics["ferplus"].items() if isinstance(v, (int, float)))
        )
    return "\n".join(lines + info)
