"""Knowledge distillation on the CPU (issue 15, item 2): what the teacher costs, and a short
distillation of the bundled ``fast`` model from the ``default`` + ``fast`` ensemble.

Self-contained on fervid's public API (the trainer, ``fervid.training.loop``, is not
changed). Two steps:

``teacher``  time the bundled models' logits over FER2013 Training on the ONNX backend
             (the export fervid caches for ``backend="onnx"``), without and with flip TTA,
             and store them (Training, PublicTest, PrivateTest) in ``OUT/teacher-*.npz``.
             Wall and process CPU seconds are both printed: on a shared machine the CPU
             seconds are the steadier figure (images per CPU-second).
``train``    distil into ``fast_cnn`` (the same architecture as ``fast``, so the same speed),
             starting from the bundled ``fast`` weights: loss = ``alpha * T^2 * KL(teacher_T ||
             student_T) + (1 - alpha) * CE(label)``, where ``teacher_T`` mixes the members'
             ``softmax(logits / (t_m * T))`` (``t_m``: each model's stored temperature) with
             ensemble weights fitted on PublicTest (minimum NLL). The teacher logits are
             precomputed once on the un-augmented image with flip TTA (its flip-averaged logits
             fit both orientations the student sees); selection on PublicTest accuracy,
             PrivateTest scored once at the end. Writes ``OUT/best.pt`` (a fervid checkpoint:
             ``fervid evaluate OUT/best.pt ...`` scores it).

    .venv/bin/python benchmarks/distill_fast.py teacher --models default fast --max-images 4096   # timing only
    .venv/bin/python benchmarks/distill_fast.py teacher --out runs/distill       # all logits, stored
    .venv/bin/python benchmarks/distill_fast.py train --out runs/distill --epochs 6

Measured teacher cost: BENCHMARKS.md, section 10. ``train`` has only been checked end to end
(``--models fast --epochs 1 --max-train-images 1024``: it runs, selects on PublicTest and writes
a loadable checkpoint); no distillation result has been measured with it yet.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TEACHERS = ("default", "fast")
SPLITS = ("Training", "PublicTest", "PrivateTest")


def _slug(model: str) -> str:
    """A bundled name, or a checkpoint's file stem (teacher logits are stored per member)."""
    return Path(model).stem if Path(model).suffix else model


def _data(path: str):
    from fervid.data.datasets import load_fer2013

    d = load_fer2013(path)
    return {s: d.split(s) for s in SPLITS}


def teacher(args: argparse.Namespace) -> None:
    from fervid.inference.backends import cached_onnx
    from fervid.inference.logits import tta_logits
    from fervid.models.onnx_model import OnnxModel

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = _data(args.data)
    timing_only = args.max_images is not None
    if timing_only:
        # Time a stratified subset of Training only (nothing stored): the per-image cost is
        # what the estimate needs, and a full pass of the ResNet-18 teacher takes long on a
        # shared CPU.
        from fervid.data.datasets import stratified_subset

        tr = splits["Training"]
        splits = {"Training": tr.select(stratified_subset(tr.labels, args.max_images, seed=0))}
    rows = []
    for name in args.models:
        model = OnnxModel(cached_onnx(name), threads=args.threads)
        for tta in ("none", "flip"):
            store = {}
            for s in splits:
                imgs = splits[s].images
                w0, c0 = time.perf_counter(), time.process_time()
                z = tta_logits(model, imgs, tta, device="cpu", batch_size=256).numpy()
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                store[s] = z
                if s == "Training":
                    rows.append(
                        {
                            "model": name,
                            "tta": tta,
                            "images": len(imgs),
                            "of_training": len(imgs) / 28709,
                            "wall_s": round(wall, 1),
                            "cpu_s": round(cpu, 1),
                            "images_per_s": round(len(imgs) / wall),
                            "images_per_cpu_s": round(len(imgs) / max(cpu, 1e-9)),
                            "load_1min": round(os.getloadavg()[0], 1),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
            if timing_only:
                continue
            np.savez_compressed(
                out / f"teacher-{_slug(name)}-{tta}.npz",
                labels=np.asarray(model.preprocess.labels),
                temperature=model.temperature,
                **{s: store[s] for s in SPLITS},
                **{f"{s}_y": splits[s].labels for s in SPLITS},
            )
    (out / ("teacher_timing_subset.json" if timing_only else "teacher_timing.json")).write_text(
        json.dumps(rows, indent=2)
    )


def _metrics(y: np.ndarray, pred: np.ndarray, k: int) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=list(range(k)), average="macro", zero_division=0)),
    }


def train(args: argparse.Namespace) -> None:
    from fervid.data.preprocess import normalize, to_unit
    from fervid.evaluation.calibration import fit_ensemble_weights
    from fervid.inference.logits import tta_logits
    from fervid.models.checkpoint import load_model, make_checkpoint, save_atomic
    from fervid.runtime import softmax
    from fervid.training.augment import AugmentConfig, augment

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    splits = _data(args.data)
    members = [np.load(out / f"teacher-{_slug(m)}-{args.teacher_tta}.npz") for m in args.models]
    temps = [float(m["temperature"]) for m in members]
    # Ensemble weights on PublicTest (the members' calibrated probabilities), never PrivateTest.
    y_pub = splits["PublicTest"].labels
    w = fit_ensemble_weights([softmax(m["PublicTest"], t) for m, t in zip(members, temps)], y_pub)
    ens_pub = sum(wi * softmax(m["PublicTest"], t) for wi, m, t in zip(w, members, temps)).argmax(1)
    ens_priv = sum(wi * softmax(m["PrivateTest"], t) for wi, m, t in zip(w, members, temps)).argmax(1)
    k = 7
    teacher_info = {
        "weights": dict(zip(args.models, map(float, w))),
        "tta": args.teacher_tta,
        "PublicTest": _metrics(y_pub, ens_pub, k),
        "PrivateTest": _metrics(splits["PrivateTest"].labels, ens_priv, k),
    }
    print("teacher", json.dumps(teacher_info), flush=True)
    tr = splits["Training"]
    rows = np.arange(len(tr.labels))
    if args.max_train_images is not None:  # a quick check of the loop, not a result
        from fervid.data.datasets import stratified_subset

        rows = np.sort(stratified_subset(tr.labels, args.max_train_images, seed=0))
        tr = tr.select(rows)
    soft = torch.as_tensor(
        sum(wi * softmax(m["Training"][rows], t * args.T) for wi, m, t in zip(w, members, temps)), dtype=torch.float32
    )
    y = torch.as_tensor(tr.labels, dtype=torch.long)
    x_all = torch.from_numpy(tr.images)

    student = load_model("fast")  # same architecture as the shipped `fast`: the same speed
    student.train()
    pre = student.preprocess
    decay = [p for n, p in student.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in student.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        momentum=0.9,
        nesterov=True,
    )
    aug = AugmentConfig(hflip=0.5, rotate=12, scale=(0.85, 1.2), translate=0.1, erase=0.25, mixup=0.0)
    n, bs = len(y), args.batch_size
    steps = n // bs
    total = steps * args.epochs

    def evaluate(split: str) -> dict[str, float]:
        s = splits[split]
        return _metrics(s.labels, tta_logits(student, s.images, "none", "cpu", 512).argmax(1).numpy(), k)

    base_pub = evaluate("PublicTest")
    print("start (bundled fast)", json.dumps(base_pub), flush=True)
    best, best_epoch, log = base_pub["accuracy"], 0, []
    best_state = {kk: v.clone() for kk, v in student.state_dict().items()}
    for epoch in range(args.epochs):
        g = torch.Generator().manual_seed(args.seed * 100003 + epoch)
        order = torch.randperm(n, generator=g)
        student.train()
        t0, c0, tot = time.perf_counter(), time.process_time(), 0.0
        for step in range(steps):
            it = epoch * steps + step
            lr = args.lr * 0.5 * (1 + math.cos(math.pi * it / total))  # cosine from the start: a fine-tune
            for grp in opt.param_groups:
                grp["lr"] = lr
            idx = order[step * bs : (step + 1) * bs]
            xb = normalize(augment(to_unit(x_all[idx], pre), aug, g), pre)
            z = student(xb.contiguous(memory_format=torch.channels_last)).float()
            kd = F.kl_div(F.log_softmax(z / args.T, 1), soft[idx], reduction="batchmean") * args.T**2
            loss = args.alpha * kd + (1 - args.alpha) * F.cross_entropy(z, y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 5.0)
            opt.step()
            tot += float(loss.detach()) * len(idx)
        student.eval()
        pub = evaluate("PublicTest")
        rec = {
            "epoch": epoch + 1,
            "loss": tot / (steps * bs),
            "PublicTest": pub,
            "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round(time.process_time() - c0, 1),
            "load_1min": round(os.getloadavg()[0], 1),
        }
        log.append(rec)
        print(json.dumps(rec), flush=True)
        if pub["accuracy"] > best:
            best, best_epoch = pub["accuracy"], epoch + 1
            best_state = {kk: v.clone() for kk, v in student.state_dict().items()}
    student.load_state_dict(best_state)
    student.eval()
    final = {
        "best_epoch": best_epoch,
        "start_PublicTest": base_pub,
        "PublicTest": evaluate("PublicTest"),
        "PrivateTest": evaluate("PrivateTest"),
        "teacher": teacher_info,
        "T": args.T,
        "alpha": args.alpha,
        "lr": args.lr,
        "epochs": args.epochs,
        "log": log,
    }
    print("final", json.dumps({k2: final[k2] for k2 in ("best_epoch", "PublicTest", "PrivateTest")}), flush=True)
    (out / "final.json").write_text(json.dumps(final, indent=2))
    # best_epoch 0 means no epoch beat the bundled model on PublicTest: best.pt is then `fast` itself.
    save_atomic(
        make_checkpoint(
            student,
            distillation={k2: final[k2] for k2 in ("T", "alpha", "lr", "epochs", "best_epoch")}
            | {"teacher": teacher_info},
            metrics={"PublicTest": final["PublicTest"]},
        ),
        out / "best.pt",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("teacher", "train"):
        p = sub.add_parser(name)
        p.add_argument(
            "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/fer2013/fer2013.csv.gz")
        )
        p.add_argument("--out", default="runs/distill")
        p.add_argument("--models", nargs="+", default=list(TEACHERS))
        p.add_argument("--threads", type=int, default=1)
    sub.choices["teacher"].add_argument(
        "--max-images", dest="max_images", type=int, help="time a stratified subset of Training only; store nothing"
    )
    t = sub.choices["train"]
    t.add_argument("--teacher-tta", dest="teacher_tta", choices=("none", "flip"), default="flip")
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--T", type=float, default=4.0, help="distillation temperature")
    t.add_argument("--alpha", type=float, default=0.7, help="weight of the distillation term")
    t.add_argument("--lr", type=float, default=0.01)
    t.add_argument("--batch-size", dest="batch_size", type=int, default=128)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--max-train-images",
        dest="max_train_images",
        type=int,
        help="stratified subset of Training (a quick check of the loop)",
    )
    args = ap.parse_args()
    (teacher if args.cmd == "teacher" else train)(args)


if __name__ == "__main__":
    main()
