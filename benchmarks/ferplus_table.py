"""Print the FER+ tables of benchmarks/ferplus.md from the runs of benchmarks/ferplus_modes.sh
(``python benchmarks/ferplus_table.py [PREFIX]``, PREFIX as given to the script, default ferplus)."""

from __future__ import annotations

import json
from pathlib import Path

RUNS = Path("runs")


def row(name: str, m: dict, extra: str = "") -> str:
    f = m["ferplus"]
    return (
        f"| {name} | {f['majority_accuracy']:.4f} | {f['majority_macro_f1']:.4f} | {f['kl_divergence']:.3f} | "
        f"{f['plausible_accuracy']:.4f} | {m['accuracy']:.4f} | {f['ambiguity_auroc']:.3f} | {extra}|"
    )


def main() -> None:
    import sys

    prefix = sys.argv[1] if len(sys.argv) > 1 else "ferplus"
    print(
        "| training targets | FER+ majority acc | FER+ macro-F1 | KL(votes‖model) | >=30%-vote acc | FER2013 acc | "
        "entropy AUROC (split faces) | epochs (best) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mode in ("majority", "probability", "crossentropy", "multilabel"):
        d = RUNS / f"{prefix}-{mode}"
        if not (d / "eval-private" / "metrics.json").is_file():
            continue
        fin = json.loads((d / "final.json").read_text())
        m = json.loads((d / "eval-private" / "metrics.json").read_text())
        ep = f"{fin['epochs_run']} ({fin['best_epoch']}) "
        print(row(f"ferplus-{mode}", m, ep))
        cal = d / "eval-private-cal" / "metrics.json"
        if cal.is_file():
            mc = json.loads(cal.read_text())
            print(row(f"ferplus-{mode} + PublicTest temperature {mc['temperatures'][0]:.2f}", mc, ep))
    for split in ("eval-private",):
        p = RUNS / "ferplus-default" / split / "metrics.json"
        if p.is_file():
            print(row("bundled `default` (ResNet-18, FER2013 7-class, stored T)", json.loads(p.read_text())))
    for split in ("eval-private", "eval-public"):
        p = RUNS / "ferplus-default" / split / "metrics.json"
        if p.is_file():
            f = json.loads(p.read_text())["ferplus"]
            print(
                f"\n`default` on {split.split('-')[1]}: split share {f['split_share']:.4f}, flagged (ambiguous_share) "
                f"{f['ambiguous_share']:.4f}, matched threshold {f['matched_threshold']:.4f}, "
                f"AUROC {f['ambiguity_auroc']:.4f}, images {f['images']}"
            )


if __name__ == "__main__":
    main()
