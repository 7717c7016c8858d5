"""The scripts in examples/ run end to end on real data, as a user would run them (their
``main(argv)``, in this process), and produce what the docs show: a table and a picture each.
They skip cleanly without the data (the scripts themselves exit 0 with a message then)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from tolerances import U64, gamma

REPO = Path(__file__).resolve().parents[1]


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", REPO / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= 200, f"{path}: {im.format} {im.size}"


def docs_table_rows(section: str) -> list[str]:
    """The data rows of the first table under the docs/examples.md heading that starts with ``section``."""
    text = (REPO / "docs" / "examples.md").read_text(encoding="utf-8")
    body = text.split("\n## " + section, 1)[1].split("\n## ", 1)[0]
    table = [line for line in body.splitlines() if line.startswith("|")]
    return table[2:]  # past the header and the |---| line


def test_video_timeline(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ex = load_example("video_timeline")
    assert ex.main(["--out", str(tmp_path), str(data_root / "media" / "short_hamilton_clip.mp4")]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    people = [f for f in summary["faces"].values() if f["seconds_on_screen"] >= 1.0]
    assert people, "nobody on screen for a second in the Hamilton clip"
    for face in people:  # one table row per person on screen >= 1 s, with their dominant emotion
        assert f"| {face['face_id']} | {face['seconds_on_screen']:.1f} | {face['dominant_emotion']} |" in printed
        # each share rounded to 4 decimals (within 0.5e-4); before that, seconds per label over
        # the total, both float64 sums of the frames' durations: 2 * frames + 2 * k roundings
        k = len(face["emotion_share"])
        assert abs(sum(face["emotion_share"].values()) - 1) <= k * 0.5e-4 + gamma(2 * face["frames"] + 2 * k, U64)
    rows = (tmp_path / "timeline.csv").read_text().splitlines()
    assert len(rows) - 1 == sum(f["frames"] for f in summary["faces"].values())
    assert_png(tmp_path / "timeline.png")
    # docs/examples.md shows this run's first rows (person, time on screen, dominant emotion):
    # a change in the tracker or the model that changes them makes the docs stale
    shown = docs_table_rows("A per-person emotion timeline")
    assert shown, "docs/examples.md shows no table for the video timeline"
    ran = [row.split("|")[1:4] for row in printed.splitlines() if row.startswith("| ") and row[2].isdigit()]
    assert [row.split("|")[1:4] for row in shown] == ran[: len(shown)], (shown, ran)


def test_finetune_folder(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    ex = load_example("finetune_folder")
    assert ex.main(["--out", str(tmp_path)]) == 0  # the defaults: what docs/examples.md shows
    printed = capsys.readouterr().out
    for label in ex.LABELS:  # the folder holds what the script says, under plain names
        assert len(list((tmp_path / "my_faces" / label).glob(f"{label}_*.jpg"))) == 75
    ck = torch.load(tmp_path / "run" / "best.pt", map_location="cpu", weights_only=True)
    assert list(ck["labels"]) == list(ex.LABELS), "the label set did not come from the folders"
    lines = [ln for ln in printed.splitlines() if ln.startswith(("| bundled default", "| fine-tuned"))]
    assert len(lines) == 2
    for line in lines:  # four labels at chance are 25%; both models are far above it on FER2013 faces
        accuracy = float(line.split("|")[2].strip().rstrip("%"))
        assert accuracy > 50.0, line
    assert_png(tmp_path / "confusion.png")
    shown = docs_table_rows("Fine-tuning the bundled model")
    assert [row.split("|")[1].strip() for row in shown] == ["bundled default", "fine-tuned"], shown


def test_imbalance_study(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ex = load_example("imbalance_study")
    assert ex.main(["--out", str(tmp_path)]) == 0  # the defaults: what docs/examples.md shows
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["strategy"] for r in rows] == ["none", "oversample"]
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["macro_f1"] <= 1.0
        assert f"| fast_cnn | {r['strategy']} | 1 | {100 * r['accuracy']:.1f}" in printed
    assert_png(tmp_path / "study.png")
    shown = docs_table_rows("The class-imbalance study")
    assert [row.split("|")[2].strip() for row in shown] == ["none", "oversample"], shown
