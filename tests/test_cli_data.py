"""``fervid data info|show|pack`` through ``fervid.cli.main``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fervid.cli import main


@pytest.fixture
def small_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FERVID_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    usages = ["Training", "PublicTest", "PrivateTest"]
    lines = ["emotion,pixels,Usage"]
    for i in range(21):
        px = " ".join(map(str, rng.integers(0, 256, 2304)))
        lines.append(f"{i % 7},{px},{usages[i % 3]}")
    p = tmp_path / "small.csv"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_info_json_real(
    fer_csv: Path, data_root: Path, official_counts: dict[str, list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["data", "info", str(fer_csv), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["total"] == 35887
    for split, counts in official_counts.items():
        assert list(info["splits"][split]["classes"].values()) == counts
        assert info["splits"][split]["total"] == sum(counts)
    assert info["labels"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert info["imbalance_ratio"] == round((7215 + 895 + 879) / (436 + 56 + 55), 2)
    assert 0.45 < info["pixel_mean"] < 0.55 and 0.2 < info["pixel_std"] < 0.3
    assert "skipped" not in info

    ferplus = data_root / "fer2013" / "fer2013new.csv"
    assert main(["data", "info", str(fer_csv), "--ferplus", str(ferplus), "--json"]) == 0
    fp = json.loads(capsys.readouterr().out)["ferplus"]
    assert fp["all"]["images"] == 35714 and fp["all"]["not_face"] == 173
    assert 0.6 < fp["fer2013_label_agreement"] < 0.75
    assert sum(fp["Training"]["majority_classes"].values()) < 28709


def test_info_text(small_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", str(small_csv)]) == 0
    out = capsys.readouterr().out
    assert f"{small_csv}: 21 images" in out
    assert "Training" in out and "PrivateTest" in out and "imbalance" in out


def test_info_bad_file_is_one_clear_error(small_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = small_csv.read_text().splitlines()
    lines[5] = "12," + lines[5].split(",", 1)[1]
    small_csv.write_text("\n".join(lines) + "\n")
    assert main(["data", "info", str(small_csv), "--json"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"fervid data: error: {small_csv}, line 6, field 'emotion': label 12 out of range 0..6"
    assert main(["data", "info", str(small_csv), "--json", "--lenient"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["total"] == 20 and info["skipped"]["count"] == 1
    assert "line 6" in info["skipped"]["records"][0]


def test_info_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", str(tmp_path / "nope.csv")]) == 1
    assert "no such file" in capsys.readouterr().err


def _png_ok(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        arr = np.asarray(im.convert("L"))
    assert arr.std() > 20  # an actual picture, not a blank canvas
    return im.size


def test_show_real_with_ferplus(
    fer_csv: Path, data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "grid.png"
    ferplus = data_root / "fer2013" / "fer2013new.csv"
    assert (
        main(
            [
                "data",
                "show",
                str(fer_csv),
                "--out",
                str(out),
                "--split",
                "PublicTest",
                "--per-class",
                "3",
                "--ferplus",
                str(ferplus),
            ]
        )
        == 0
    )
    assert f"wrote {out}" in capsys.readouterr().out
    w, h = _png_ok(out)
    assert h > w  # 7 class rows of 3 faces + vote bars


def test_show_synthetic_and_errors(small_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "grid.png"
    assert main(["data", "show", str(small_csv), "--out", str(out), "--per-class", "2", "--seed", "1"]) == 0
    _png_ok(out)
    assert main(["data", "show", str(small_csv), "--out", str(out), "--split", "Validation"]) == 1
    assert "Validation" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "show", str(small_csv), "--out", str(out), "--per-class", "0"])


def test_show_folder_refuses_ferplus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "imgs"
    (root / "happy").mkdir(parents=True)
    Image.new("L", (48, 48), 50).save(root / "happy" / "a.png")
    fp = tmp_path / "fp.csv"
    fp.write_text(
        "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
        "Training,a.png,0,10,0,0,0,0,0,0,0,0\n"
    )
    assert main(["data", "show", str(root), "--out", str(tmp_path / "g.png"), "--ferplus", str(fp)]) == 1
    assert "image-folder" in capsys.readouterr().err


def test_pack_roundtrip(small_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = tmp_path / "train.npz"
    assert main(["data", "pack", str(small_csv), "--out", str(pack), "--splits", "Training"]) == 0
    assert "(7 images)" in capsys.readouterr().out
    assert main(["data", "info", str(pack), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["total"] == 7 and list(info["splits"]) == ["Training"]


def test_cli_imports_nothing_heavy_for_info() -> None:
    """Importing the data CLI and fervid.plots must not pull matplotlib in (only drawing does)."""
    import subprocess

    code = (
        "import sys, fervid.cli.data, fervid.data.plots, fervid.data.stats, fervid.data.ferplus; "
        "print('matplotlib' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
