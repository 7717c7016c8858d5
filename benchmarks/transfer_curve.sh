#!/usr/bin/env bash
# Learning curve of fine-tuning on small labelled subsets of FER+ Training (majority
# targets, 8 classes with contempt): from the bundled `fast` model (fast_cnn trained on
# FER2013; its 7 classifier rows are kept, contempt starts fresh) versus the same
# architecture from scratch, same epochs, batch size and augmentation. Selection on
# PublicTest (FER+ majority), report PrivateTest (FER+ majority). Results: benchmarks/transfer.md.
# Usage: bash benchmarks/transfer_curve.sh [EPOCHS]
set -euo pipefail
EPOCHS=${1:-20}
DATA=../shared/data/fer2013/fer2013.csv.gz
VOTES=../shared/data/fer2013/fer2013new.csv
LOCK=${FERVID_LOCK-flock /tmp/fervid-cpu.lock}  # FERVID_LOCK= runs without the shared lock
# FER+ Training images kept by the majority rule (the 100% of the curve).
FULL=$(.venv/bin/python -c "
from fervid.data import load_fer2013; from fervid.ferplus import load_ferplus, align, targets
d = load_fer2013('$DATA').split('Training'); v = load_ferplus('$VOTES')
print(int(targets(align(d, v), 'majority', not_face=v.not_face[d.index])[1].sum()))")
echo "FER+ majority training images: $FULL"
for PCT in 1 5 20; do
  N=$(( FULL * PCT / 100 ))
  OUT=runs/transfer/p$PCT
  [ -f $OUT-scratch/final.json ] || $LOCK .venv/bin/fervid train --model fast_cnn --data $DATA --targets ferplus-majority \
      --ferplus $VOTES --max-train-samples $N --epochs $EPOCHS --batch-size 64 --out $OUT-scratch --no-progress \
      --set workers_threads=1
  [ -f $OUT-finetune/final.json ] || $LOCK .venv/bin/fervid finetune fast --data $DATA --targets ferplus-majority \
      --ferplus $VOTES --max-train-samples $N --epochs $EPOCHS --batch-size 64 --out $OUT-finetune --no-progress \
      --set workers_threads=1
done
.venv/bin/python - <<'PY'
import json
print("| labelled FER+ training | from scratch: acc | macro-F1 | fine-tuned from `fast`: acc | macro-F1 |")
print("|---|---|---|---|---|")
for p in (1, 5, 20):
    s = json.load(open(f"runs/transfer/p{p}-scratch/final.json"))["PrivateTest"]
    f = json.load(open(f"runs/transfer/p{p}-finetune/final.json"))["PrivateTest"]
    print(f"| {p}% | {s['accuracy']:.4f} | {s['macro_f1']:.4f} | {f['accuracy']:.4f} | {f['macro_f1']:.4f} |")
PY
