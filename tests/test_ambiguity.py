"""fervid.ambiguity: per-face ambiguity scores and FER+ vote metrics, on hand-made
numbers (checked against scipy/sklearn) and on the real FER+ votes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fervid.emotions import FER2013, FERPLUS8
from fervid.evaluation.ambiguity import annotator_split, ferplus_metrics, matched_threshold, model_votes
from fervid.inference.ambiguity import (
    AMBIGUITY_THRESHOLD,
    ambiguity_summary,
    is_ambiguous,
    labels_above,
    normalized_entropy,
    top2_margin,
)


def test_normalized_entropy_matches_scipy():
    from scipy.stats import entropy

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7), size=50)
    got = normalized_entropy(p)
    assert got.shape == (50,)
    np.testing.assert_allclose(got, entropy(p, axis=1) / math.log(7), rtol=1e-9)
    assert normalized_entropy(np.full(7, 1 / 7)) == pytest.approx(1.0)
    assert normalized_entropy(np.eye(7)[3]) == 0.0
    assert isinstance(normalized_entropy([0.5, 0.5]), float)
    assert normalized_entropy([1.0]) == 0.0


def test_margin_labels_above_and_flags():
    p = np.array([0.05, 0.0, 0.05, 0.45, 0.35, 0.0, 0.10])
    assert top2_margin(p) == pytest.approx(0.10)
    assert labels_above(p, FER2013) == ("happy", "sad")
    assert labels_above(p, FER2013, 0.4) == ("happy",)
    # ties keep the label order
    assert labels_above(np.array([0.5, 0.5]), ("b", "a"), 0.3) == ("b", "a")
    with pytest.raises(ValueError):
        labels_above(p, FER2013[:3])
    with pytest.raises(ValueError):
        labels_above(p, FER2013, 1.5)
    flat, sure = np.full(7, 1 / 7), np.eye(7)[0]
    assert is_ambiguous(flat) is True and is_ambiguous(sure) is False
    np.testing.assert_array_equal(is_ambiguous(np.stack([flat, sure])), [True, False])
    s = ambiguity_summary(p, FER2013)
    assert s["labels_above"] == ["happy", "sad"] and s["ambiguous"] == (s["ambiguity"] >= AMBIGUITY_THRESHOLD)
    assert s["top2_margin"] == pytest.approx(0.10)


def _votes(rows):
    """Hand-written FER+ rows in FERPLUS8 order + unknown + NF."""
    return np.asarray(rows, dtype=np.int64)


def test_ferplus_metrics_by_hand():
    #          angry dis fear happy sad sur neu con  unk NF
    votes = _votes(
        [
            [0, 0, 0, 10, 0, 0, 0, 0, 0, 0],  # unanimous happy
            [0, 0, 0, 0, 5, 0, 5, 0, 0, 0],  # sad 5 / neutral 5: a tie is no majority
            [0, 0, 0, 0, 6, 0, 4, 0, 0, 0],  # sad majority, split with neutral
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face
            [0, 0, 0, 0, 0, 0, 3, 7, 0, 0],
        ]
    )  # contempt majority
    # A model that outputs exactly the vote shares: KL 0, all majority labels right.
    dist = votes[:, :8] / np.maximum(votes[:, :8].sum(1, keepdims=True), 1)
    dist[3] = 1 / 8
    m = ferplus_metrics(dist, votes, FERPLUS8)
    assert m["images"] == 3 and m["excluded"] == 2
    assert m["majority_accuracy"] == 1.0 and m["kl_divergence"] == pytest.approx(0.0, abs=1e-6)
    assert m["plausible_accuracy"] == 1.0
    assert m["split_share"] == pytest.approx(2 / 3)  # rows 2 (6/4) and 4 (3/7)
    assert m["ambiguous_share"] == 0.0 and np.isnan(m["flagged_split_share"])  # confident: nothing flagged
    # A model that hesitates everywhere flags all three; two of them are split.
    mu = ferplus_metrics(np.full((5, 8), 1 / 8), votes, FERPLUS8)
    assert mu["ambiguous_share"] == 1.0 and mu["flagged_split_share"] == pytest.approx(2 / 3)
    # A model that always says neutral: right on no majority, plausible on the two split faces.
    neutral = np.tile(np.eye(8)[6] * 0.93 + 0.01, (5, 1))
    m2 = ferplus_metrics(neutral, votes, FERPLUS8)
    assert m2["majority_accuracy"] == 0.0 and m2["plausible_accuracy"] == pytest.approx(2 / 3)
    assert m2["kl_divergence"] > 1.0
    # A 7-class model: contempt votes are dropped first, so row 4 becomes unanimous neutral.
    m7 = ferplus_metrics(neutral[:, :7] / neutral[:, :7].sum(1, keepdims=True), votes, FER2013)
    assert m7["dropped_vote_columns"] == ["contempt"] and m7["dropped_votes"] == 7
    assert m7["majority_accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="N x 8"):
        ferplus_metrics(dist[:, :7], votes, FERPLUS8)
    with pytest.raises(ValueError, match="not a FER\\+ emotion"):
        model_votes(votes, ("happy", "smile"))


def test_annotator_split_and_matched_threshold():
    votes = _votes(
        [
            [0, 0, 0, 5, 5, 0, 0, 0, 0, 0],
            [0, 0, 0, 10, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 2, 8, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 4, 0, 6, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(annotator_split(votes), [True, False, False, True])
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(8), size=4)
    p[:, 3] += 1
    p /= p.sum(1, keepdims=True)
    ok = np.array([False, True, True, True])  # row 0 has no majority: excluded
    ent = normalized_entropy(p[ok])
    assert matched_threshold(p, votes, FERPLUS8) == pytest.approx(np.quantile(ent, 1 - 1 / 3))


def test_ferplus_metrics_on_real_votes(fer_data, data_root):
    """The real PrivateTest votes scored against the annotators' own distribution (a
    perfect soft model) and against a constant 'happy' model."""
    from fervid.data.ferplus import align, load_ferplus

    test = fer_data.split("PrivateTest")
    votes = align(test, load_ferplus(data_root / "fer2013" / "fer2013new.csv"))
    dist = votes[:, :8] / np.maximum(votes[:, :8].sum(1, keepdims=True), 1)
    dist[dist.sum(1) == 0] = 1 / 8
    m = ferplus_metrics(dist, votes, FERPLUS8)
    assert 3000 < m["images"] < 3589 and m["majority_accuracy"] == 1.0 and m["kl_divergence"] < 1e-6
    assert 0.1 < m["split_share"] < 0.5
    happy = np.tile(np.eye(7)[3] * 0.9 + 0.1 / 7, (len(test), 1))
    h = ferplus_metrics(happy, votes, FER2013)
    assert 0.2 < h["majority_accuracy"] < 0.4 and h["kl_divergence"] > 1.0


def test_the_page_flags_ambiguity_at_the_same_level_as_the_api():
    """The web page computes `ambiguous` in the browser (onnxruntime-web); its copy of the
    threshold must follow the Python one when the bundled model changes it."""
    import re
    from pathlib import Path

    import fervid.serve

    js = (Path(fervid.serve.__file__).parent / "static" / "app.js").read_text()
    (value,) = re.findall(r"const AMBIGUOUS = ([0-9.]+);", js)
    assert float(value) == AMBIGUITY_THRESHOLD
