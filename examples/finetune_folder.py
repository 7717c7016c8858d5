"""Fine-tune the bundled model on your own labelled folder.

Your data: one folder per label (``my_faces/happy/*.jpg``, ``my_faces/sad/*.jpg``, ...), any
image size or format, and any label set (here four of the FER2013 emotions). fervid holds out
a stratified part of it for choosing the epoch, fine-tunes, calibrates, and writes a normal
checkpoint that every command takes (``fervid predict --model runs/ft/best.pt``).

    python examples/finetune_folder.py [--out DIR] [--per-class N] [--epochs E]

To have a folder to show, this script builds one from the FER2013 test images of the data
folder ($FERVID_DATA, or ``../shared/data``): ``--per-class`` images of each label with plain
file names (as your own photos would have), and a separate held-out folder to score on. It
ends in a table (accuracy before and after, per class) and a confusion-matrix picture.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

LABELS = ("happy", "sad", "surprise", "neutral")


def build_folders(images: Path, out: Path, per_class: int, held_out: int) -> tuple[Path, Path]:
    """Links ``per_class`` PublicTest images per label into ``out/my_faces/<label>/`` and
    ``held_out`` PrivateTest ones into ``out/held_out/<label>/`` (names without the Kaggle split
    prefix, so the folder is read as yours would be)."""
    train, test = out / "my_faces", out / "held_out"
    for label in LABELS:
        files = sorted((images / label).glob("*.jpg"))
        chosen = {
            train: [f for f in files if f.name.startswith("PublicTest_")][:per_class],
            test: [f for f in files if f.name.startswith("PrivateTest_")][:held_out],
        }
        for root, picked in chosen.items():
            (root / label).mkdir(parents=True, exist_ok=True)
            for i, f in enumerate(picked):
                link = root / label / f"{label}_{i:04d}.jpg"
                if not link.exists():
                    os.symlink(f.resolve(), link)
    return train, test


Scores = tuple[list[str], list[str], list[float]]


def score(model: str, folder: Path) -> Scores:
    """True and predicted labels of every image in ``folder`` (whole image = one face, as in
    FER2013) and the probability given to the true label, all restricted to :data:`LABELS`."""
    from fervid import EmotionRecognizer

    rec = EmotionRecognizer(model=model, detector="skip")
    truth, pred, p_true = [], [], []
    for label_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for result in rec.predict_batch(sorted(label_dir.glob("*.jpg"))):
            probs = result.faces[0].probabilities
            truth.append(label_dir.name)
            pred.append(max(LABELS, key=lambda lab: probs.get(lab, 0.0)))
            p_true.append(probs[label_dir.name] / sum(probs.get(lab, 0.0) for lab in LABELS))
    return truth, pred, p_true


def report(before: Scores, after: Scores, picture: Path) -> str:
    import numpy as np
    from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

    from fervid.data.plots import subplots

    lines = ["| model | accuracy | mean p(true label) | " + " | ".join(f"recall {lab}" for lab in LABELS) + " |"]
    lines.append("|---|---:|---:|" + "---:|" * len(LABELS))
    for name, (truth, pred, p_true) in (("bundled default", before), ("fine-tuned", after)):
        rec = recall_score(truth, pred, labels=list(LABELS), average=None, zero_division=0)
        lines.append(
            f"| {name} | {accuracy_score(truth, pred):.1%} | {np.mean(p_true):.2f} | "
            + " | ".join(f"{r:.2f}" for r in rec)
            + " |"
        )
    cm = confusion_matrix(after[0], after[1], labels=list(LABELS))  # rows: true label
    fig, ax = subplots(figsize=(4.6, 4))
    ax.imshow(cm, cmap="Purples")
    ax.set_xticks(range(len(LABELS)), LABELS, rotation=30)
    ax.set_yticks(range(len(LABELS)), LABELS)
    for (i, j), n in np.ndenumerate(cm):
        ax.text(j, i, str(n), ha="center", va="center", color="black" if n < cm.max() / 2 else "white")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("fine-tuned, held-out faces")
    fig.tight_layout()
    fig.savefig(picture, dpi=100)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/finetune_folder", help="output folder (default out/finetune_folder)")
    parser.add_argument("--per-class", type=int, default=75, help="training images per label (default 75)")
    parser.add_argument("--held-out", type=int, default=50, help="held-out images per label (default 50)")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs (default 1)")
    args = parser.parse_args(argv)
    from fervid.runtime import data_root

    root = data_root()
    if root is None or not (root / "fer2013-images" / "test").is_dir():
        print("no data folder with fer2013-images/ found (set FERVID_DATA); nothing to do", file=sys.stderr)
        return 0
    from fervid.training.finetune import finetune

    out = Path(args.out)
    train, test = build_folders(root / "fer2013-images" / "test", out, args.per_class, args.held_out)
    final = finetune(
        "default",
        train,
        epochs=args.epochs,
        out=str(out / "run"),
        overwrite=True,
        progress=False,
        device="cpu",
        workers_threads=1,  # one torch thread: small batches gain nothing from more, and shared CPUs lose
    )
    print(f"fine-tuned on {len(list(train.glob('*/*.jpg')))} images; labels {final['labels']}")
    table = report(score("default", test), score(str(out / "run" / "best.pt"), test), out / "confusion.png")
    print(table)
    print(f"picture: {out / 'confusion.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
