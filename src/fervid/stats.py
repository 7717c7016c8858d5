"""Dataset statistics (``fervid data info``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import FERData


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
    info["pixel_mean"] = round(float(data.images.mean()) / 255, 4)
    info["pixel_std"] = round(float(data.images.std()) / 255, 4)
    if data.skipped:
        info["skipped"] = {"count": len(data.skipped), "records": [str(s) for s in data.skipped[:50]]}
    if ferplus_path:
        from .ferplus import agreement_stats, align, load_ferplus

        votes = load_ferplus(ferplus_path)
        v = align(data, votes)
        nf = votes.not_face[data.index]
        info["ferplus"] = {"all": agreement_stats(v, nf)}
        for s in data.split_names:
            m = data.splits == s
            info["ferplus"][s] = agreement_stats(v[m], nf[m])
        # How often the FER+ majority agrees with the original FER2013 label (7 shared classes).
        from .ferplus import targets

        maj, keep = targets(v, "majority")
        keep &= maj < 7
        if keep.any():
            info["ferplus"]["fer2013_label_agreement"] = round(float((maj[keep] == data.labels[keep]).mean()), 4)
    return info


def format_info(info: dict[str, Any]) -> str:
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
        lines.append(f"skipped {info['skipped']['count']} bad records:")
        lines += ["  " + r for r in info["skipped"]["records"]]
    if "ferplus" in info:
        fp = info["ferplus"]
        a = fp["all"]
        lines.append(f"FER+: {a['images']} faces, {a['not_face']} not-a-face; mean top-vote share {a['mean_top_vote_share']:.3f}, "
                     f"unanimous {a['unanimous_share']:.3f}, majority label {a['majority_share']:.3f}, "
                     f">=2 labels with 30% of votes {a['multi_label_share']:.3f}")
        if "fer2013_label_agreement" in fp:
            lines.append(f"FER+ majority agrees with the FER2013 label on {fp['fer2013_label_agreement'] * 100:.1f}% of images")
    return "\n".join(lines)


def images_mean_std(images: np.ndarray) -> tuple[float, float]:
    x = images.astype(np.float32) / 255
    return float(x.mean()), float(x.std())
