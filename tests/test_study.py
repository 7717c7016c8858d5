"""fervid study: aggregation (mean +- std over seeds), the table and plot, a tiny real
grid run end to end (resumable), and config validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fervid.emotions import FER2013


def _row(strategy: str, seed: int, acc: float, f1: float, disgust: float) -> dict:
    rec = {c: 0.5 for c in FER2013}
    rec["disgust"] = disgust
    return {
        "model": "fast_cnn",
        "strategy": strategy,
        "seed": seed,
        "accuracy": acc,
        "macro_f1": f1,
        "public_accuracy": acc + 0.01,
        "public_macro_f1": f1 + 0.01,
        "recall": rec,
    }


def test_summarize_mean_std_and_table(tmp_path):
    from fervid.training.study import markdown_table, summarize, write_outputs

    rows = [_row("none", 0, 0.50, 0.40, 0.0), _row("none", 1, 0.60, 0.44, 0.2), _row("focal", 0, 0.55, 0.50, 0.3)]
    s = summarize(rows)
    none = next(x for x in s if x["strategy"] == "none")
    assert none["n"] == 2 and none["accuracy"] == pytest.approx(0.55)
    assert none["accuracy_std"] == pytest.approx(np.std([0.5, 0.6], ddof=1))
    assert none["recall"]["disgust"] == pytest.approx((0.1, np.std([0.0, 0.2], ddof=1)))
    focal = next(x for x in s if x["strategy"] == "focal")
    assert focal["accuracy_std"] == 0.0
    md = markdown_table(s)
    lines = md.strip().splitlines()
    assert len(lines) == 4 and "recall disgust" in lines[0] and "recall fear" in lines[0]
    assert lines[0].index("disgust") < lines[0].index("recall angry")  # focus classes first
    assert "55.0 ± 7.1" in md and "**50.0 ± 0.0**" in md  # best macro-F1 in bold
    paths = write_outputs(rows, tmp_path)
    assert paths["plot"].stat().st_size > 5000 and "| fast_cnn | focal |" in paths["markdown"].read_text()
    assert json.loads(paths["json"].read_text())["summary"][0]["n"] == 2


def test_study_config_validation():
    from fervid.training.study import StudyConfig

    with pytest.raises(ValueError, match="strategy"):
        StudyConfig(strategies=["none", "bogus"]).validate()
    with pytest.raises(ValueError, match="model"):
        StudyConfig(models=["nope"]).validate()
    assert len(StudyConfig(strategies=["none", "focal"], seeds=[0, 1, 2]).grid()) == 6


def test_run_study_tiny_grid_end_to_end(synthetic_data, tmp_path):
    """Two strategies x two seeds, 1 epoch on 200 synthetic images: real training runs
    selected on PublicTest and reported on PrivateTest; a second call resumes."""
    from fervid.training.study import StudyConfig, run_study

    data = synthetic_data
    cfg = StudyConfig(
        data="",
        strategies=["none", "inverse"],
        seeds=[0, 1],
        epochs=1,
        max_train_samples=200,
        batch_size=64,
        out=str(tmp_path),
        device="cpu",
        workers_threads=1,
    )
    rows = run_study(cfg, data=data, log=lambda s: None)
    assert [(r["strategy"], r["seed"]) for r in rows] == [("none", 0), ("none", 1), ("inverse", 0), ("inverse", 1)]
    for r in rows:
        final = json.loads((tmp_path / "runs" / f"fast_cnn-{r['strategy']}-s{r['seed']}" / "final.json").read_text())
        assert (
            r["accuracy"] == final["PrivateTest"]["accuracy"]
            and r["public_accuracy"] == final["PublicTest"]["accuracy"]
        )
        assert set(r["recall"]) == set(FER2013)
        cfg_run = json.loads((tmp_path / "runs" / f"fast_cnn-{r['strategy']}-s{r['seed']}" / "config.json").read_text())
        assert cfg_run["imbalance"] == r["strategy"] and cfg_run["epochs"] == 1 and cfg_run["max_train_samples"] == 200
    md = (tmp_path / "study.md").read_text()
    assert "| fast_cnn | none | 2 |" in md and "| fast_cnn | inverse | 2 |" in md
    assert (tmp_path / "study.png").is_file() and len((tmp_path / "results.jsonl").read_text().splitlines()) == 4
    # An existing study is never silently reused; with resume nothing is retrained, the same rows come back.
    from fervid.errors import OutputError

    with pytest.raises(OutputError, match="already holds a run .*--resume.*--overwrite"):
        run_study(cfg, data=data, log=lambda s: None)
    msgs: list[str] = []
    again = run_study(cfg, data=data, log=msgs.append, resume=True)
    assert again == rows and sum("done earlier" in m for m in msgs) == 4
