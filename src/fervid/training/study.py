"""Controlled comparisons: train and evaluate a grid of models x imbalance strategies x seeds
under one fixed budget, then report mean +- std over seeds.

Protocol (the same as :func:`fervid.training.loop.train`): every run selects its weights on
PublicTest; PrivateTest is evaluated once per run with the selected weights and is the
only split reported in the table. Nothing is tuned on PrivateTest.

Outputs under ``StudyConfig.out``::

    runs/<model>-<strategy>-s<seed>/   one training run each (best.pt, final.json, ...)
    results.jsonl                      one line per finished run
    study.md                           the Markdown table (mean +- std over seeds)
    study.png                          accuracy, macro-F1 and per-class recall plot
    study.json                         the config and the aggregated numbers

A study is resumable: runs whose ``final.json`` exists are read, not retrained.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from fervid.data.datasets import load_dataset
from fervid.data.imagefile import verify_image
from fervid.data.plots import subplots
from fervid.emotions import FER2013
from fervid.errors import UserValueError
from fervid.models import list_models
from fervid.safety import atomic_path, make_dir, prepare_run_dir, write_json_atomic, write_text_atomic
from fervid.training.imbalance import STRATEGIES
from fervid.training.schema import ANY, Rule, at_least, between, check_fields, check_keys, declare

#: Classes singled out in the table (the rare, hard ones in FER2013).
FOCUS_CLASSES: tuple[str, ...] = ("disgust", "fear")


@dataclass
class StudyConfig:
    """A grid of training runs under one budget."""

    data: str = ""
    models: list[str] = field(default_factory=lambda: ["fast_cnn"])
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    epochs: int = 4
    max_train_samples: int | None = 8000
    batch_size: int = 128
    out: str = "runs/study"
    device: str = "auto"
    workers_threads: int | None = None
    train_overrides: dict[str, Any] = field(default_factory=dict)  # any other TrainConfig key
    progress: bool = True  # each run's training bar (fervid.runtime.progress_bar); not part of the budget

    def validate(self) -> None:
        """Every key against its type and declared rule (:data:`STUDY_SCHEMA`); the models
        registered; the training overrides as a training config would take them."""
        from fervid.training.config import TrainConfig

        check_fields(self)
        if not self.models or not self.strategies or not self.seeds:
            raise UserValueError("a study needs at least one model, one strategy and one seed")
        known = list_models()
        bad = [m for m in self.models if m not in known]
        if bad:
            raise UserValueError(f"unknown model {bad}; registered: {known}")
        check_keys(self.train_overrides, {f.name for f in fields(TrainConfig)}, "training config (--set)")
        owned = sorted(set(self.train_overrides) & _STUDY_OWNED)
        if owned:  # each run's value comes from the study: an override would be silently replaced
            raise UserValueError(f"--set {owned[0]}: set by the study itself (see fervid study --help)")
        for model in self.models:  # each run's config, checked before the first run trains
            TrainConfig.from_dict({**self.train_overrides, "model": model, "seed": self.seeds[0]}).validate()

    def grid(self) -> list[tuple[str, str, int]]:
        return [(m, s, seed) for m in self.models for s in self.strategies for seed in self.seeds]


# The keys every run of the grid takes from the study (see run_study).
_STUDY_OWNED = frozenset(
    {"data", "model", "imbalance", "seed", "epochs", "max_train_samples", "batch_size", "out", "device"}
    | {"workers_threads", "progress", "eval_private"}
)
STUDY_SCHEMA = {
    "data": ANY,
    "models": ANY,  # registered families: checked in validate
    "strategies": Rule(choices=STRATEGIES, each=True, note="each an imbalance strategy"),
    "seeds": Rule(lo=0, hi=2**32 - 1, each=True),
    "epochs": at_least(1),
    "max_train_samples": at_least(1, "null: all"),
    "batch_size": at_least(1),
    "out": ANY,
    "device": ANY,
    "workers_threads": between(1, 4096, note="CPU threads; null: torch's default"),
    "train_overrides": ANY,  # checked as a training config in validate
    "progress": ANY,
}
declare(STUDY_SCHEMA)(StudyConfig)


def run_name(model: str, strategy: str, seed: int) -> str:
    return f"{model}-{strategy}-s{seed}"


def _row(model: str, strategy: str, seed: int, final: dict[str, Any], labels: Sequence[str]) -> dict[str, Any]:
    pub, priv = final.get("PublicTest", {}), final.get("PrivateTest", {})
    return {
        "model": model,
        "strategy": strategy,
        "seed": seed,
        "best_epoch": final.get("best_epoch"),
        "epochs_run": final.get("epochs_run"),
        "wall_seconds": final.get("wall_seconds"),
        "public_accuracy": pub.get("accuracy"),
        "public_macro_f1": pub.get("macro_f1"),
        "accuracy": priv.get("accuracy"),
        "macro_f1": priv.get("macro_f1"),
        "recall": dict(zip(labels, priv.get("recall", []))),
    }


STUDY_FILES: tuple[str, ...] = ("study_config.json", "results.jsonl", "study.md", "study.png", "study.json")
_BUDGET_KEYS = ("epochs", "max_train_samples", "batch_size", "train_overrides")


def run_study(
    cfg: StudyConfig,
    *,
    data: Any | None = None,
    log: Callable[[str], None] = print,
    resume: bool = False,
    overwrite: bool = False,
) -> list[dict[str, Any]]:
    """Train every (model, strategy, seed) of the grid with the same budget; returns one
    row per run (PrivateTest accuracy, macro-F1 and per-class recall, PublicTest selection
    scores) and writes the table and plot (see the module docstring).

    An ``out`` that already holds a study needs ``resume`` (finished runs are read, an
    interrupted one continues from its ``last.pt``; the budget must be the same) or
    ``overwrite`` (every run of the grid is trained again)."""
    from fervid.training.config import TrainConfig
    from fervid.training.loop import train

    cfg.validate()
    out = prepare_run_dir(cfg.out, resume=resume, overwrite=overwrite, artefacts=STUDY_FILES)
    earlier = out / "study_config.json"
    if resume and earlier.is_file():
        try:
            before = json.loads(earlier.read_text())
        except ValueError as e:
            raise UserValueError(f"{earlier}: unreadable ({e}); use --overwrite to start the study again") from e
        changed = [k for k in _BUDGET_KEYS if before.get(k) != asdict(cfg).get(k)]
        if changed:
            raise UserValueError(
                f"{out}: the study there ran with another budget ("
                + ", ".join(f"{k} {before.get(k)!r}, now {asdict(cfg).get(k)!r}" for k in changed)
                + "): its runs would not be comparable; use another --out or --overwrite"
            )
    if data is None:
        if not cfg.data:
            raise UserValueError("no data: set StudyConfig.data")
        data = load_dataset(cfg.data)
    if "PrivateTest" not in data.split_names:  # the table reports PrivateTest: refuse before any run
        raise UserValueError(
            f"{data.source}: no PrivateTest split, which a study reports (the runs select on PublicTest); "
            "use data with the three FER2013 splits"
        )
    make_dir(out / "runs")
    write_json_atomic(earlier, asdict(cfg))
    labels = tuple(data.label_names)
    rows: list[dict[str, Any]] = []
    grid = cfg.grid()
    t0 = time.time()
    for i, (model, strategy, seed) in enumerate(grid):
        rdir = out / "runs" / run_name(model, strategy, seed)
        fin = rdir / "final.json"
        if fin.is_file() and not overwrite:
            log(f"[{i + 1}/{len(grid)}] {rdir.name}: done earlier, reading {fin}")
        else:
            log(f"[{i + 1}/{len(grid)}] {rdir.name}: training ({time.time() - t0:.0f} s elapsed)")
            tc = TrainConfig.from_dict(
                {
                    **cfg.train_overrides,
                    "data": cfg.data,
                    "model": model,
                    "imbalance": strategy,
                    "seed": seed,
                    "epochs": cfg.epochs,
                    "max_train_samples": cfg.max_train_samples,
                    "batch_size": cfg.batch_size,
                    "out": str(rdir),
                    "device": cfg.device,
                    "workers_threads": cfg.workers_threads,
                    "progress": cfg.progress,
                    "eval_private": True,
                }
            )
            # --resume continues an interrupted run from its last.pt (one killed before its first
            # epoch ended has nothing to keep); --overwrite retrains every run.
            again = resume and (rdir / "last.pt").is_file()
            train(tc, data=data, resume=again, overwrite=overwrite or (resume and not again))
        row = _row(model, strategy, seed, json.loads(fin.read_text()), labels)
        rows.append(row)
        log(
            f"    PrivateTest acc {row['accuracy']:.4f} macro-F1 {row['macro_f1']:.4f} "
            + " ".join(f"{c} {row['recall'].get(c, float('nan')):.3f}" for c in FOCUS_CLASSES)
        )
        # rewritten (atomically): always the rows so far, no duplicates
        write_text_atomic(out / "results.jsonl", "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows))
        write_outputs(rows, out, labels, cfg)
    return rows


def summarize(rows: Sequence[dict[str, Any]], labels: Sequence[str] = FER2013) -> list[dict[str, Any]]:
    """Mean and standard deviation (ddof=1; 0 for a single seed) over seeds per (model, strategy)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["strategy"]), []).append(r)
    out = []
    for (model, strategy), rs in groups.items():

        def ms(vals: list[float]) -> tuple[float, float]:
            a = np.asarray(vals, dtype=np.float64)
            return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0

        s: dict[str, Any] = {"model": model, "strategy": strategy, "seeds": [r["seed"] for r in rs], "n": len(rs)}
        for key in ("accuracy", "macro_f1", "public_accuracy", "public_macro_f1"):
            s[key], s[key + "_std"] = ms([r[key] for r in rs])
        s["recall"] = {c: ms([r["recall"][c] for r in rs]) for c in labels if all(c in r["recall"] for r in rs)}
        out.append(s)
    return out


def markdown_table(summary: Sequence[dict[str, Any]], labels: Sequence[str] = FER2013) -> str:
    """PrivateTest accuracy, macro-F1 and per-class recall as ``mean ± std`` (percent)."""

    def pm(m: float, s: float) -> str:
        return f"{100 * m:.1f} ± {100 * s:.1f}"

    cls = [c for c in FOCUS_CLASSES if c in labels] + [c for c in labels if c not in FOCUS_CLASSES]
    head = ["model", "imbalance", "seeds", "accuracy", "macro-F1"] + [f"recall {c}" for c in cls]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    best_f1 = max((s["macro_f1"] for s in summary), default=0.0)
    for s in summary:
        f1 = pm(s["macro_f1"], s["macro_f1_std"])
        if s["macro_f1"] == best_f1:
            f1 = f"**{f1}**"
        cells = [s["model"], s["strategy"], str(s["n"]), pm(s["accuracy"], s["accuracy_std"]), f1]
        cells += [pm(*s["recall"][c]) if c in s["recall"] else "–" for c in cls]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_study(summary: Sequence[dict[str, Any]], path: str | Path, labels: Sequence[str] = FER2013) -> None:
    """Two panels: accuracy and macro-F1 per configuration, and per-class recall (error bars: std over seeds)."""
    import matplotlib

    names = [
        f"{s['model']}\n{s['strategy']}" if len({x["model"] for x in summary}) > 1 else s["strategy"] for s in summary
    ]
    x = np.arange(len(summary))
    fig, (a1, a2) = subplots(1, 2, figsize=(max(10, 1.6 * len(summary) + 6), 4.5), gridspec_kw={"width_ratios": [1, 2]})
    w = 0.38
    a1.bar(
        x - w / 2,
        [s["accuracy"] for s in summary],
        w,
        yerr=[s["accuracy_std"] for s in summary],
        label="accuracy",
        capsize=3,
    )
    a1.bar(
        x + w / 2,
        [s["macro_f1"] for s in summary],
        w,
        yerr=[s["macro_f1_std"] for s in summary],
        label="macro-F1",
        capsize=3,
    )
    a1.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    a1.set_ylim(0, 1)
    a1.set_title("PrivateTest (mean ± std over seeds)")
    a1.legend(fontsize=8)
    cls = [c for c in labels if all(c in s["recall"] for s in summary)]
    wc = 0.8 / max(1, len(summary))
    cmap = matplotlib.colormaps["tab10"]
    xc = np.arange(len(cls))
    for j, s in enumerate(summary):
        a2.bar(
            xc - 0.4 + wc * (j + 0.5),
            [s["recall"][c][0] for c in cls],
            wc,
            yerr=[s["recall"][c][1] for c in cls],
            label=names[j].replace("\n", " "),
            color=cmap(j % 10),
            capsize=2,
            error_kw={"elinewidth": 0.8},
        )
    a2.set_xticks(xc, cls)
    for lab in a2.get_xticklabels():
        if lab.get_text() in FOCUS_CLASSES:
            lab.set_fontweight("bold")
    a2.set_ylim(0, 1)
    a2.set_title("PrivateTest recall per class")
    a2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_outputs(
    rows: Sequence[dict[str, Any]], out: str | Path, labels: Sequence[str] = FER2013, cfg: StudyConfig | None = None
) -> dict[str, Path]:
    """Write ``study.md``, ``study.png`` and ``study.json`` for the rows so far."""
    out = Path(out)
    summary = summarize(rows, labels)
    md = ["# fervid study", ""]
    if cfg is not None:
        md += [
            f"Budget: {cfg.epochs} epochs, max_train_samples={cfg.max_train_samples}, batch {cfg.batch_size}; "
            f"seeds {cfg.seeds}. Selected on PublicTest, reported on PrivateTest (percent, mean ± std over seeds).",
            "",
        ]
    md += [markdown_table(summary, labels), "![study](study.png)", ""]
    paths = {"markdown": out / "study.md", "plot": out / "study.png", "json": out / "study.json"}
    write_text_atomic(paths["markdown"], "\n".join(md))
    with atomic_path(paths["plot"], verify=verify_image) as tmp:  # read back before it is reported written
        plot_study(summary, tmp, labels)
    write_json_atomic(paths["json"], {"config": asdict(cfg) if cfg else None, "summary": summary, "runs": list(rows)})
    return paths
