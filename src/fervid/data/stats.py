"""Dataset statistics (``fervid data info``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fervid.data.datasets import FERData
from fervid.data.ferplus import agreement_stats, align, load_ferplus, targets
from fervid.emotions import FERPLUS8


def dataset_info(data: FERData, ferplus_path: str | None = None) -> dict[str, Any]:
    """Rows per split and class, class shares, imbalance ratio and (with FER+) agreement."""
    info: dict[str, Any] = {"source": data.source, "total": len(data), "labels": list(data.label_names), "splits": {}}
    for s in data.split_names:
        counts = data.class_counts(s)
        total = int((data.splits == s).sum())
        nz = [c for c in counts.values() if c > 0]
        info["splits"][s] = {
            "total": total,
            "classes": counts,
            "shares": {k: round(v / max(1, sum(counts.values())), 4) for k, v in counts.items()},
            "imbalance_ratio": round(max(nz) / min(nz), 2) if nz else None,
        }
    counts_all = data.class_counts()
    nz = [c for c in counts_all.values() if c > 0]
    info["classes"] = counts_all
    info["imbalance_ratio"] = round(max(nz) / min(nz), 2) if nz else None
    unlabelled = int((data.labels < 0).sum())
    if unlabelled:
        info["unlabelled"] = unlabelled
    mean, std = images_mean_std(data.images)
    info["pixel_mean"] = round(mean, 4)
    info["pixel_std"] = round(std, 4)
    if data.skipped:
        info["skipped"] = {"count": len(data.skipped), "records": [str(s) for s in data.skipped[:50]]}
    if ferplus_path:
        votes = load_ferplus(ferplus_path, expected_rows=data.source_rows)
        v = align(data, votes)
        nf = votes.not_face[data.index]
        fp: dict[str, Any] = {"source": votes.source, "all": agreement_stats(v, nf)}
        maj, keep = targets(v, "majority", not_face=nf)
        for s in data.split_names:
            m = data.splits == s
            fp[s] = agreement_stats(v[m], nf[m])
            maj_counts = np.bincount(maj[m & keep], minlength=len(FERPLUS8))
            fp[s]["majority_classes"] = {n: int(c) for n, c in zip(FERPLUS8, maj_counts)}
        if votes.skipped:
            fp["skipped"] = {"count": len(votes.skipped), "records": [str(r) for r in votes.skipped[:50]]}
        # How often the FER+ majority agrees with the original FER2013 label (7 shared classes).
        both = keep & (maj < 7) & (data.labels >= 0)
        if both.any():
            fp["fer2013_label_agreement"] = round(float((maj[both] == data.labels[both]).mean()), 4)
        info["ferplus"] = fp
    return info


def format_info(info: dict[str, Any]) -> str:
    """Human-readable table of :func:`dataset_info`'s result."""
    labels = info["labels"]
    lines = [f"{info['source']}: {info['total']} images"]
    head = f"{'split':12s} {'total':>7s} " + " ".join(f"{n[:8]:>8s}" for n in labels) + "  imbalance"
    lines.append(head)
    for s, d in info["splits"].items():
        row = f"{s:12s} {d['total']:7d} " + " ".join(f"{d['classes'][n]:8d}" for n in labels)
        lines.append(row + f"  {d['imbalance_ratio']}")
        lines.append(f"{'':12s} {'':7s} " + " ".join(f"{d['shares'][n] * 100:7.1f}%" for n in labels))
    lines.append(f"imbalance ratio (largest/smallest class, all splits): {info['imbalance_ratio']}")
    if "skipped" in info:
        lines.append(f"skipped or ignored {info['skipped']['count']} records:")
        lines += ["  " + r for r in info["skipped"]["records"]]
    if "ferplus" in info:
        fp = info["ferplus"]
        a = fp["all"]
        lines.append(
            f"FER+: {a['images']} faces, {a['not_face']} not-a-face; mean top-vote share {a['mean_top_vote_share']:.3f}, "
            f"unanimous {a['unanimous_share']:.3f}, majority label {a['majority_share']:.3f}, "
            f">=2 labels with 30% of votes {a['multi_label_share']:.3f}"
        )
        maj = [(s, fp[s]["majority_classes"]) for s in info["splits"] if s in fp]
        if maj:
            names = list(maj[0][1])
            lines.append("FER+ majority labels (images kept by the FER+ rules):")
            lines.append(f"{'split':12s} {'kept':>7s} " + " ".join(f"{n[:8]:>8s}" for n in names))
            for s, c in maj:
                lines.append(f"{s:12s} {sum(c.values()):7d} " + " ".join(f"{c[n]:8d}" for n in names))
        if "skipped" in fp:
            lines.append(f"FER+: {fp['skipped']['count']} bad rows given zero votes:")
            lines += ["  " + r for r in fp["skipped"]["records"]]
        if "fer2013_label_agreement" in fp:
            lines.append(
                f"FER+ majority agrees with the FER2013 label on {fp['fer2013_label_agreement'] * 100:.1f}% of images"
            )
    return "\n".join(lines)


def images_mean_std(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of uint8 pixels scaled to 0..1, exact, via a 256-bin
    histogram (no float copy of the images: the full FER2013 set would need 660 MB)."""
    if images.dtype != np.uint8:
        x = images.astype(np.float64) / 255
        return float(x.mean()), float(x.std())
    hist = np.bincount(images.ravel(), minlength=256).astype(np.float64)
    n = hist.sum()
    if n == 0:
        return float("nan"), float("nan")
    vals = np.arange(256, dtype=np.float64) / 255
    mean = float((hist * vals).sum() / n)
    var = float((hist * (vals - mean) ** 2).sum() / n)
    return mean, var**0.5
