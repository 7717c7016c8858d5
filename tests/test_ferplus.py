"""FER+ votes: reading fer2013new.csv, alignment with fer2013.csv, and the target rules."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fervid.data.datasets import FERData, FERDataError
from fervid.data.ferplus import TARGET_MODES, agreement_stats, align, distribution, load_ferplus, targets
from fervid.emotions import FERPLUS, FERPLUS8, FERPLUS_TO_FERPLUS8
from tolerances import U32, U64, gamma

HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
E = {name: i for i, name in enumerate(FERPLUS8)}  # fervid column of each emotion
UNK, NF = 8, 9
# A vote share: a float64 division cast to float32, within U32 of its value (<= 1); compared with
# float64 references (a constant, or the reference code's two divisions and a sum of <= 8 shares)
SHARE = U32 + gamma(11, U64)


def vrow(**votes: int) -> list[int]:
    """A 10-column vote row in fervid order from keyword counts (unknown=, NF=)."""
    row = [0] * 10
    for k, n in votes.items():
        row[UNK if k == "unknown" else NF if k == "NF" else E[k]] = n
    return row


# ------------------------------------------------------------------- target rules


def test_majority_rules() -> None:
    v = np.array(
        [
            vrow(happy=6, neutral=4),  # clear majority
            vrow(happy=5, neutral=5),  # tie: no majority
            vrow(unknown=6, happy=4),  # unknown wins: excluded
            vrow(NF=10),  # not a face: excluded
            vrow(happy=5, sad=1, angry=1, fear=1, neutral=2),  # single votes removed -> 5/7 is a majority
            vrow(happy=4, neutral=3, sad=3),  # 4/10: no majority
            vrow(),  # no votes at all
        ]
    )
    label, keep = targets(v, "majority")
    assert keep.tolist() == [True, False, False, False, True, False, False]
    assert label[0] == E["happy"] and label[4] == E["happy"]
    assert label.dtype == np.int64 and label.shape == (7,)


def test_probability_rules() -> None:
    v = np.array(
        [
            vrow(happy=6, neutral=3, sad=1),  # sad's single vote dropped -> 2/3, 1/3
            vrow(unknown=5, happy=3, sad=2),  # unknown is the top choice: excluded
            vrow(happy=4, unknown=4, sad=2),  # tie with unknown: unknown dropped, 4/10 left: excluded
            vrow(angry=2, disgust=2, fear=2, sad=2, surprise=2),  # 5 tied emotions > 3: excluded
            vrow(surprise=5, fear=3, happy=2),  # 75% covered after 2 emotions: happy left out
            vrow(NF=10),
        ]
    )
    for mode in ("probability", "crossentropy"):
        t, keep = targets(v, mode)
        assert t.shape == (6, 8) and t.dtype == np.float32
        assert keep.tolist() == [True, False, False, False, True, False]
        # shares within SHARE; a row's float32 sum adds 7 roundings of its total 1: gamma(8)
        np.testing.assert_allclose(t[0], np.eye(8)[E["happy"]] * 2 / 3 + np.eye(8)[E["neutral"]] / 3, atol=SHARE)
        np.testing.assert_allclose(t[4, [E["surprise"], E["fear"], E["happy"]]], [0.625, 0.375, 0.0], atol=SHARE)
        np.testing.assert_allclose(t[keep].sum(1), 1.0, atol=gamma(8))


def test_multilabel_threshold() -> None:
    v = np.array(
        [
            vrow(happy=4, surprise=4, neutral=2),  # 30%: happy and surprise
            vrow(unknown=4, happy=3, sad=3),  # unknown strongest: excluded
            vrow(happy=9, sad=1),
        ]
    )
    t, keep = targets(v, "multilabel", threshold=0.3)
    assert keep.tolist() == [True, False, True]
    assert np.flatnonzero(t[0]).tolist() == sorted([E["happy"], E["surprise"]])
    assert np.flatnonzero(t[2]).tolist() == [E["happy"]]
    assert set(np.unique(t).tolist()) <= {0.0, 1.0}
    t5, keep5 = targets(v, "multilabel", threshold=0.5)
    assert keep5.tolist() == [False, False, True]  # nothing has 50% in row 0
    with pytest.raises(ValueError, match="threshold"):
        targets(v, "multilabel", threshold=0)


def test_not_face_flag_and_seven_class_votes() -> None:
    v = np.array([vrow(happy=8, neutral=2), vrow(contempt=6, happy=4), vrow(sad=7, neutral=3)])
    _, keep = targets(v, "majority", not_face=np.array([False, False, True]))
    assert keep.tolist() == [True, True, False]
    # Contempt dropped by the caller: 7 emotions + unknown + NF. The last two are still non-emotions.
    v7 = np.concatenate([v[:, :7], v[:, 8:]], 1)
    v7 = np.vstack([v7, np.r_[np.zeros(7, int), 7, 3]])  # unknown-majority row
    lab, keep7 = targets(v7, "majority")
    assert keep7.tolist() == [True, True, True, False] and lab[1] == E["happy"]
    for mode in ("probability", "multilabel"):
        t, _ = targets(v7, mode)
        assert t.shape == (4, 7)
    assert distribution(v7).shape == (4, 7)


def test_distribution_and_errors() -> None:
    v = np.array([vrow(happy=6, neutral=3, sad=1), vrow(NF=10)])
    d = distribution(v)
    np.testing.assert_allclose(d[0, [E["happy"], E["neutral"], E["sad"]]], [0.6, 0.3, 0.1], atol=SHARE)
    assert d[1].sum() == 0  # no emotion votes: no distribution
    with pytest.raises(ValueError, match="unknown FER\\+ target mode"):
        targets(v, "soft")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="N x \\(K\\+2\\)"):
        targets(v[0], "majority")
    assert set(TARGET_MODES) == {"majority", "probability", "crossentropy", "multilabel"}


def _reference(emotion_raw: list[float], mode: str) -> list[float] | None:
    """A literal port of FERPlus's ``_process_data`` + the keep rule of its reader
    (microsoft/FERPlus, src/ferplus.py, MIT), on one row in FER+ column order.
    Returns the normalised 8-emotion target, or None when the image is excluded."""
    size = len(emotion_raw)
    emotion_unknown = [0.0] * size
    emotion_unknown[-2] = 1.0
    emotion_raw = list(emotion_raw)
    for i in range(size):
        if emotion_raw[i] < 1.0 + sys.float_info.epsilon:
            emotion_raw[i] = 0.0
    sum_list = sum(emotion_raw)
    emotion = [0.0] * size
    if mode == "majority":
        maxval = max(emotion_raw)
        if maxval > 0.5 * sum_list:
            emotion[int(np.argmax(emotion_raw))] = maxval
        else:
            emotion = emotion_unknown
    elif mode == "probability":
        sum_part, count, valid_emotion = 0.0, 0, True
        while sum_part < 0.75 * sum_list and count < 3 and valid_emotion:
            maxval = max(emotion_raw)
            for i in range(size):
                if emotion_raw[i] == maxval:
                    emotion[i] = maxval
                    emotion_raw[i] = 0
                    sum_part += emotion[i]
                    count += 1
                    if i >= 8:
                        valid_emotion = False
                        if sum(emotion) > maxval:
                            emotion[i] = 0
                            count -= 1
                        break
        if sum(emotion) <= 0.5 * sum_list or count > 3:
            emotion = emotion_unknown
    else:
        for i in range(size):
            if emotion_raw[i] >= 0.3 * sum_list:
                emotion[i] = emotion_raw[i]
        if sum(emotion) <= 0.5 * sum_list:
            emotion = emotion_unknown
    emotion = [float(e) / sum(emotion) for e in emotion]
    if int(np.argmax(emotion)) >= 8:
        return None
    emo = emotion[:-2]
    return [e / sum(emo) for e in emo]


def test_targets_match_the_reference_implementation() -> None:
    """Random 10-vote rows (skewed to produce ties, unknown and NF often)."""
    rng = np.random.default_rng(0)
    p = np.array([3, 3, 2, 2, 1.5, 1, 1, 0.7, 1.2, 0.6])
    raw = np.array([rng.multinomial(10, rng.dirichlet(p)) for _ in range(1500)])  # FER+ column order
    ours = np.zeros_like(raw)
    ours[:, FERPLUS_TO_FERPLUS8] = raw[:, :8]
    ours[:, 8:] = raw[:, 8:]
    for mode, ref_mode in (("majority", "majority"), ("probability", "probability"), ("multilabel", "multi")):
        t, keep = targets(ours, mode)  # type: ignore[arg-type]
        for i, row in enumerate(raw):
            ref = _reference(row.astype(float).tolist(), ref_mode)
            assert keep[i] == (ref is not None), (mode, row.tolist())
            if ref is None:
                continue
            ref8 = np.zeros(8)
            ref8[FERPLUS_TO_FERPLUS8] = ref
            if mode == "majority":
                assert t[i] == int(np.argmax(ref8))
            elif mode == "probability":
                np.testing.assert_allclose(t[i], ref8, atol=SHARE)
            else:
                assert (t[i] > 0).tolist() == (ref8 > 0).tolist()
        assert 0.2 < keep.mean() < 0.95, mode  # the sample exercises both outcomes


# ------------------------------------------------------------- reading the vote file


def write_ferplus(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return path


def test_load_ferplus_reorders_columns(tmp_path: Path) -> None:
    p = write_ferplus(
        tmp_path / "fer2013new.csv",
        [
            "Training,fer0000000.png,7,3,0,0,0,0,0,0,0,0",
            "PublicTest,,0,0,0,0,0,0,0,0,0,10",
            "PrivateTest,fer0000002.png,0,0,0,0,0,0,0,4,6,0",
        ],
    )
    fp = load_ferplus(p, expected_rows=3)
    assert fp.votes.shape == (3, 10) and fp.columns == FERPLUS8 + ("unknown", "NF")
    assert fp.votes[0, E["neutral"]] == 7 and fp.votes[0, E["happy"]] == 3
    assert fp.votes[2, E["contempt"]] == 4 and fp.votes[2, UNK] == 6 and fp.votes[1, NF] == 10
    assert fp.not_face.tolist() == [False, True, False]
    assert fp.splits.tolist() == ["Training", "PublicTest", "PrivateTest"]
    assert [FERPLUS8[FERPLUS_TO_FERPLUS8[i]] for i in range(8)] == [
        "neutral",
        "happy",
        "surprise",
        "sad",
        "angry",
        "disgust",
        "fear",
        "contempt",
    ]
    assert len(FERPLUS) == 8


@pytest.mark.parametrize(
    "row,field,message",
    [
        ("Training,a.png,4,x,0,0,0,0,0,0,0,6", "happiness", "not a non-negative integer: 'x'"),
        ("Training,a.png,4,2.5,0,0,0,0,0,0,0,6", "happiness", "'2.5'"),
        ("Training,a.png,4,0,0,0,0,0,-1,0,0,6", "fear", "negative vote count"),
        ("Training,a.png,4,0,0,0", None, "expected 12 fields, found 6"),
        ("Train,a.png,4,0,0,0,0,0,0,0,0,6", "Usage", "unknown Usage 'Train'"),
    ],
)
def test_bad_ferplus_rows(tmp_path: Path, row: str, field: str | None, message: str) -> None:
    good = "Training,b.png,10,0,0,0,0,0,0,0,0,0"
    p = write_ferplus(tmp_path / "fp.csv", [good, row, good])
    with pytest.raises(FERDataError) as ei:
        load_ferplus(p)
    assert (ei.value.path, ei.value.line, ei.value.field) == (str(p), 3, field)
    assert message in ei.value.reason
    lenient = load_ferplus(p, strict=False)  # the bad row keeps its place with zero votes
    assert len(lenient) == 3 and lenient.votes[1].sum() == 0 and lenient.votes[2, E["neutral"]] == 10
    assert [(s.line, s.field) for s in lenient.skipped] == [(3, field)]
    assert not targets(lenient.votes, "majority")[1][1]


def test_ferplus_file_errors(tmp_path: Path) -> None:
    p = write_ferplus(tmp_path / "fp.csv", ["Training,b.png,10,0,0,0,0,0,0,0,0,0"] * 4)
    with pytest.raises(FERDataError, match="has 4 rows but the FER2013 file has 5"):
        load_ferplus(p, expected_rows=5)
    (tmp_path / "hdr.csv").write_text("Usage,neutral\nTraining,3\n")
    with pytest.raises(FERDataError, match="lacks FER\\+ column") as ei:
        load_ferplus(tmp_path / "hdr.csv")
    assert ei.value.line == 1
    with pytest.raises(FERDataError, match="no such file"):
        load_ferplus(tmp_path / "none.csv")


def _fake_data(splits: list[str], source_rows: int | None = None, files: bool = False) -> FERData:
    n = len(splits)
    return FERData(
        images=np.zeros((n, 48, 48), np.uint8),
        labels=np.zeros(n, np.int64),
        splits=np.asarray(splits),
        index=np.arange(n),
        source="fer.csv",
        source_rows=source_rows,
        files=np.asarray([f"{i}.png" for i in range(n)]) if files else None,
    )


def test_align_checks(tmp_path: Path) -> None:
    p = write_ferplus(
        tmp_path / "fp.csv", ["Training,a.png,10,0,0,0,0,0,0,0,0,0", "PublicTest,b.png,0,10,0,0,0,0,0,0,0,0"]
    )
    fp = load_ferplus(p)
    v = align(_fake_data(["Training", "PublicTest"], source_rows=2), fp)
    assert v[1, E["happy"]] == 10
    with pytest.raises(FERDataError, match="different Usage.*data row 1: PrivateTest vs FER\\+ PublicTest"):
        align(_fake_data(["Training", "PrivateTest"]), fp)
    with pytest.raises(FERDataError, match="has 2 rows but fer.csv has 3"):
        align(_fake_data(["Training", "PublicTest", "Training"], source_rows=3), fp)
    with pytest.raises(FERDataError, match="references row 2"):
        align(_fake_data(["Training", "PublicTest", "Training"]), fp)
    with pytest.raises(FERDataError, match="image-folder"):
        align(_fake_data(["Training", "PublicTest"], files=True), fp)


# ------------------------------------------------------------------------ real data


@pytest.fixture(scope="module")
def real_votes(data_root: Path, fer_data: FERData):
    return load_ferplus(data_root / "fer2013" / "fer2013new.csv", expected_rows=len(fer_data))


def test_real_ferplus_alignment(real_votes, fer_data: FERData, data_root: Path) -> None:
    assert len(real_votes) == 35887 and real_votes.skipped == []
    assert (real_votes.splits == fer_data.splits).all()  # row-by-row: splits agree everywhere
    v = align(fer_data, real_votes)
    assert v.shape == (35887, 10)
    assert int(real_votes.not_face.sum()) == 173
    assert (v[real_votes.not_face, NF] == 10).all()
    assert set(np.unique(v.sum(1)).tolist()) <= {9, 10}
    sub = fer_data.split("PrivateTest")
    np.testing.assert_array_equal(align(sub, real_votes), v[fer_data.splits == "PrivateTest"])
    with pytest.raises(FERDataError, match="35887 rows but the FER2013 file has 35886"):
        load_ferplus(data_root / "fer2013" / "fer2013new.csv", expected_rows=35886)


def test_real_ferplus_targets(real_votes, fer_data: FERData) -> None:
    v = align(fer_data, real_votes)
    maj, keep = targets(v, "majority", not_face=real_votes.not_face)
    assert 0.85 < keep.mean() < 0.9
    assert not keep[real_votes.not_face].any()
    # FER+ relabelled FER2013: the majority agrees with the old label on about two thirds.
    both = keep & (maj < 7)
    agree = float((maj[both] == fer_data.labels[both]).mean())
    assert 0.6 < agree < 0.75, agree
    stats = agreement_stats(v, real_votes.not_face)
    assert stats["images"] == 35714 and stats["not_face"] == 173
    assert 0.5 < stats["mean_top_vote_share"] < 0.95 and 0 < stats["mean_normalised_entropy"] < 1
    soft = distribution(v)
    has_emotion = v[:, :8].sum(1) > 0  # a few faces got only unknown/NF votes
    assert (~has_emotion & ~real_votes.not_face).sum() < 10
    np.testing.assert_allclose(soft[has_emotion].sum(1), 1.0, atol=gamma(8))
    assert (soft[~has_emotion] == 0).all()
