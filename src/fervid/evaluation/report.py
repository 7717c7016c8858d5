"""A self-contained HTML evaluation report (plots embedded as base64 PNG, no external assets).

Sections: a short text summary, the settings and models, headline metrics, confusion
matrices (counts and row-normalised), per-class precision/recall/F1, the reliability
diagram (before and after calibration when it was fitted) and the most confident
mistakes as a face grid.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fervid.data.plots import subplots
from fervid.evaluation.calibration import expected_calibration_error, reliability_bins
from fervid.safety import write_text_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from fervid.evaluation.evaluate import EvalResult


def fig_to_base64(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_confusion(cm: np.ndarray, labels: tuple[str, ...]) -> Figure:
    """Counts and row-normalised (recall) confusion matrices side by side."""
    cm = np.asarray(cm)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    fig, axes = subplots(1, 2, figsize=(12.5, 5.4))
    for ax, mat, title, fmt in (
        (axes[0], cm, "counts", "d"),
        (axes[1], norm, "row-normalised (share of the true class)", ".2f"),
    ):
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)  # colour by row share in both, so rare classes stay visible
        ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        for i in range(len(labels)):
            for j in range(len(labels)):
                v = mat[i, j]
                txt = format(int(v), "d") if fmt == "d" else (f"{v:.2f}" if rows[i, 0] > 0 else "–")
                ax.text(
                    j, i, txt, ha="center", va="center", fontsize=8.5, color="white" if norm[i, j] > 0.55 else "black"
                )
    fig.colorbar(im, ax=axes, fraction=0.025, pad=0.02, label="share of true class")
    return fig


def plot_per_class(per_class: dict[str, dict[str, float]]) -> Figure:
    """Precision, recall and F1 bars per class, with the support under each name."""
    names = list(per_class)
    x = np.arange(len(names))
    fig, ax = subplots(figsize=(10, 3.8))
    w = 0.27
    for k, (key, color) in enumerate((("precision", "#4c72b0"), ("recall", "#dd8452"), ("f1", "#55a868"))):
        vals = [per_class[n][key] for n in names]
        bars = ax.bar(x + (k - 1) * w, vals, w, label=key, color=color)
        if key == "f1":
            for b, v in zip(bars, vals):
                ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=7.5)
    ax.set_xticks(x, [f"{n}\n(n={per_class[n]['support']})" for n in names])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.legend(ncol=3, fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("per-class precision, recall and F1")
    return fig


def plot_reliability(y_true: np.ndarray, curves: list[tuple[str, np.ndarray]], n_bins: int = 15) -> Figure:
    """Reliability diagram: accuracy vs confidence per bin for each probability set, with
    the bin counts below. ECE is in each legend entry."""
    fig, (ax, axh) = subplots(2, 1, figsize=(6, 6.4), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    colors = ["#c44e52", "#4c72b0", "#55a868"]
    width = 1.0 / n_bins
    for k, (name, probs) in enumerate(curves):
        b = reliability_bins(probs, y_true, n_bins)
        ece = expected_calibration_error(probs, y_true, n_bins)
        centers = (b["edges"][:-1] + b["edges"][1:]) / 2
        # Bins with very few images are noise on the curve (they still count in the ECE and the histogram).
        m = b["count"] >= max(5, 0.002 * len(y_true))
        ax.plot(b["confidence"][m], b["accuracy"][m], "o-", color=colors[k % 3], label=f"{name} (ECE {ece:.3f})", ms=4)
        axh.bar(
            centers + (k - (len(curves) - 1) / 2) * width / len(curves),
            b["count"],
            width / len(curves),
            color=colors[k % 3],
            alpha=0.8,
        )
    ax.set_ylabel("accuracy in bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"reliability diagram ({n_bins} bins, top-label confidence)")
    ax.grid(alpha=0.3)
    axh.set_xlabel("confidence (max probability)")
    axh.set_ylabel("images")
    fig.tight_layout()
    return fig


def confident_mistakes(y_true: np.ndarray, probs: np.ndarray, k: int = 24) -> np.ndarray:
    """Indices of the ``k`` wrong predictions with the highest confidence, most confident first."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y_true)
    order = np.argsort(-probs[wrong, pred[wrong]], kind="stable")
    return wrong[order[:k]]


def plot_mistakes(
    images: np.ndarray, y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...], k: int = 24, per_row: int = 8
) -> Figure | None:
    idx = confident_mistakes(y_true, probs, k)
    if len(idx) == 0:
        return None
    rows = int(np.ceil(len(idx) / per_row))
    fig, axes = subplots(rows, per_row, figsize=(per_row * 1.55, rows * 1.95), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    pred = probs.argmax(1)
    for ax, i in zip(axes.flat, idx):
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"true {labels[y_true[i]]}\npred {labels[pred[i]]} {probs[i, pred[i]]:.2f}", fontsize=7.5)
    fig.suptitle("most confident mistakes (true class, predicted class and its probability)", fontsize=9)
    fig.tight_layout()
    return fig


def text_summary(m: dict[str, Any]) -> list[str]:
    """A few plain sentences about the result."""
    labels = m["confusion_matrix"]["labels"]
    cm = np.asarray(m["confusion_matrix"]["counts"])
    who = (
        m["models"][0]["name"]
        if len(m["models"]) == 1
        else f"an ensemble of {len(m['models'])} models ({m['ensemble']})"
    )
    out = [
        f"On {m['split']} ({m['images']:,} images) {who} reaches {100 * m['accuracy']:.1f}% accuracy, "
        f"macro-F1 {m['macro_f1']:.3f} and top-2 accuracy {100 * m['top2_accuracy']:.1f}% (test-time augmentation: {m['tta']})."
    ]
    pc = m["per_class"]
    if pc:
        best = max(pc, key=lambda c: pc[c]["f1"])
        worst = min(pc, key=lambda c: pc[c]["f1"])
        out.append(
            f"Easiest class: {best} (F1 {pc[best]['f1']:.2f}); hardest: {worst} (F1 {pc[worst]['f1']:.2f}, "
            f"recall {pc[worst]['recall']:.2f} on {pc[worst]['support']} images)."
        )
    off = cm.copy().astype(float)
    np.fill_diagonal(off, 0)
    if off.sum() > 0:
        i, j = np.unravel_index(int(off.argmax()), off.shape)
        share = off[i, j] / max(1, cm[i].sum())
        out.append(
            f"The most frequent confusion is {labels[i]} predicted as {labels[j]} "
            f"({int(off[i, j])} images, {100 * share:.0f}% of {labels[i]})."
        )
    cal = m.get("calibration")
    if cal:
        out.append(
            f"Temperature scaling fitted on {m['fit']['split']} (T = {', '.join(f'{t:.2f}' for t in m['temperatures'])}) "
            f"moves the ECE from {cal['before']['ece']:.3f} to {cal['after']['ece']:.3f} and the NLL from "
            f"{cal['before']['nll']:.3f} to {cal['after']['nll']:.3f}."
        )
    else:
        out.append(
            f"Calibration: ECE {m['ece']:.3f}, NLL {m['nll']:.3f} (temperature {', '.join(f'{t:.2f}' for t in m['temperatures'])})."
        )
    if m["excluded"]["images"]:
        out.append(
            f"{m['excluded']['images']} images of classes outside the vocabulary were left out: {m['excluded']['by_class']}."
        )
    return out


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:24px auto;padding:0 16px;color:#222}
h1{font-size:1.6em;margin-bottom:4px} h2{font-size:1.2em;margin-top:30px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:.9em;margin:8px 0} td,th{border:1px solid #ddd;padding:4px 9px;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} .sub{color:#666;font-size:.9em} img{max-width:100%}
.kpi{display:inline-block;margin:6px 18px 6px 0} .kpi b{display:block;font-size:1.5em}
code{background:#f4f4f4;padding:1px 4px;border-radius:3px;font-size:.88em}
"""


def _table(head: list[str], rows: list[list[Any]], left: int = 1) -> str:
    h = "".join(
        f"<th class='l'>{html.escape(str(c))}</th>" if i < left else f"<th>{html.escape(str(c))}</th>"
        for i, c in enumerate(head)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='l'>{html.escape(str(c))}</td>" if i < left else f"<td>{html.escape(str(c))}</td>"
            for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{h}</tr>{body}</table>"


def _img(b64: str, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>"


def render_html(res: EvalResult) -> str:
    """The report as one HTML string."""
    m = res.metrics
    labels = res.labels
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>fervid evaluation: {html.escape(m['split'])}</title>"
        f"<style>{_CSS}</style></head><body>",
        "<h1>fervid evaluation report</h1>",
        f"<div class='sub'>data <code>{html.escape(m['data'])}</code>, split <b>{html.escape(m['split'])}</b>, "
        f"{m['images']:,} images; tta <b>{m['tta']}</b>; ensemble <b>{m['ensemble']}</b>"
        f"{'; AdaBN' if m.get('adabn') else ''}</div>",
        "<h2>Summary</h2>",
        "".join(f"<p>{html.escape(s)}</p>" for s in text_summary(m)),
    ]
    kpis = [
        ("accuracy", f"{100 * m['accuracy']:.2f}%"),
        ("macro-F1", f"{m['macro_f1']:.4f}"),
        ("weighted-F1", f"{m['weighted_f1']:.4f}"),
        ("top-2 accuracy", f"{100 * m['top2_accuracy']:.2f}%"),
        ("NLL", f"{m['nll']:.4f}"),
        (f"ECE ({m['ece_bins']} bins)", f"{m['ece']:.4f}"),
    ]
    parts.append("<div>" + "".join(f"<span class='kpi'>{k}<b>{v}</b></span>" for k, v in kpis) + "</div>")
    if "members" in m:
        cols = ("accuracy", "macro_f1", "weighted_f1", "top2_accuracy", "nll", "ece")
        rows = [[x["name"], *[f"{x[c]:.4f}" for c in cols]] for x in m["members"]]
        rows.append([f"ensemble ({m['ensemble']})", *[f"{m[c]:.4f}" for c in cols]])
        parts += ["<h2>Ensemble members</h2>", _table(["model", *cols], rows)]
    parts.append("<h2>Models</h2>")
    parts.append(
        _table(
            ["name", "architecture", "parameters", "temperature", "weight", "sha256"],
            [
                [
                    i["name"],
                    i["architecture"],
                    f"{i['parameters']:,}",
                    f"{t:.3f}",
                    f"{w:.3f}",
                    (i["sha256"] or "")[:16] + "…",
                ]
                for i, t, w in zip(m["models"], m["temperatures"], m["ensemble_weights"])
            ],
            left=2,
        )
    )
    parts += [
        "<h2>Confusion matrix</h2>",
        "<p class='sub'>Rows: true class; columns: predicted class. "
        "Cells are coloured by the share of the true class.</p>",
        _img(fig_to_base64(plot_confusion(np.asarray(m["confusion_matrix"]["counts"]), labels)), "confusion matrix"),
    ]
    parts += [
        "<h2>Per class</h2>",
        _img(fig_to_base64(plot_per_class(m["per_class"])), "per-class bars"),
        _table(
            ["class", "precision", "recall", "F1", "support"],
            [
                [c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
                for c, v in m["per_class"].items()
            ],
        ),
    ]
    curves = (
        [("after temperature scaling", res.probs)] if res.probs_uncalibrated is not None else [("model", res.probs)]
    )
    if res.probs_uncalibrated is not None:
        curves.insert(0, ("before (stored temperature)", res.probs_uncalibrated))
    parts += [
        "<h2>Calibration</h2>",
        "<p class='sub'>Points above the diagonal: under-confident; below: over-confident.</p>",
        _img(fig_to_base64(plot_reliability(res.y_true, curves, m["ece_bins"])), "reliability diagram"),
    ]
    if "ferplus" in m:
        parts += [
            "<h2>FER+ (annotator votes)</h2>",
            _table(
                ["metric", "value"],
                [
                    [k, f"{v:.4f}" if isinstance(v, float) else v]
                    for k, v in m["ferplus"].items()
                    if isinstance(v, (int, float, str))
                ],
            ),
        ]
    fig = plot_mistakes(res.images, res.y_true, res.probs, labels)
    if fig is not None:
        parts += ["<h2>Most confident mistakes</h2>", _img(fig_to_base64(fig), "most confident mistakes")]
    parts.append(
        "<p class='sub'>Generated by fervid evaluate; all numbers are in metrics.json, per-image probabilities in "
        "predictions.csv.</p></body></html>"
    )
    return "\n".join(parts)


def write_report(res: EvalResult, path: str | Path) -> Path:
    return write_text_atomic(path, render_html(res))
