"""The one emotion vocabulary used everywhere in fervid.

FER2013 order is the canonical order of every 7-class output in this package.
FER+ (Barsoum et al. 2016) stores its votes in a different order and adds
``contempt`` plus two non-emotion columns, ``unknown`` and ``NF`` (not a face).
"""

from __future__ import annotations

from collections.abc import Sequence

from fervid.errors import UnknownNameError

#: FER2013 label order (``emotion`` column of ``fer2013.csv``).
FER2013: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

#: FER+ vote-column order in ``fer2013new.csv`` (8 emotions).
FERPLUS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)
#: The two FER+ columns that are not emotions.
FERPLUS_EXTRA: tuple[str, ...] = ("unknown", "NF")

#: fervid's 8-class vocabulary for FER+ heads: FER2013 order plus ``contempt``.
FERPLUS8: tuple[str, ...] = FER2013 + ("contempt",)

SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")

# Folder names and synonyms seen in public FER datasets (Kaggle, FER+, AffectNet,
# RAF-DB, CK+, JAFFE exports) mapped onto fervid's canonical names.
_SYNONYMS: dict[str, str] = {
    "angry": "angry",
    "anger": "angry",
    "ang": "angry",
    "an": "angry",
    "mad": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "dis": "disgust",
    "di": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "fe": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "hap": "happy",
    "ha": "happy",
    "sad": "sad",
    "sadness": "sad",
    "sa": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "sur": "surprise",
    "su": "surprise",
    "neutral": "neutral",
    "neu": "neutral",
    "ne": "neutral",
    "calm": "neutral",
    "contempt": "contempt",
    "contemptuous": "contempt",
    "co": "contempt",
    "unknown": "unknown",
    "nf": "NF",
    "notface": "NF",
    "not_a_face": "NF",
}

#: FER+ column name -> fervid canonical name.
FERPLUS_TO_CANONICAL: dict[str, str] = {name: _SYNONYMS[name.lower()] for name in FERPLUS}


def canonical(name: str) -> str:
    """Map a label or folder name (``"Anger"``, ``"happiness"``, ``"sad"``) to fervid's name.

    Raises ``KeyError`` with the accepted names when the name is unknown.
    """
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key in _SYNONYMS:
        return _SYNONYMS[key]
    # Numbered folders such as "3_happy" or "happy_3".
    for part in key.split("_"):
        if part in _SYNONYMS:
            return _SYNONYMS[part]
    raise UnknownNameError(f"unknown emotion name {name!r}; known: {sorted(set(_SYNONYMS.values()))}")


def try_canonical(name: str) -> str | None:
    """Like :func:`canonical` but returns ``None`` for unknown names."""
    try:
        return canonical(name)
    except KeyError:
        return None


def index_map(src: Sequence[str], dst: Sequence[str]) -> list[int]:
    """For every label in ``src`` the index of the same emotion in ``dst`` (-1 if absent)."""
    dst_c = [canonical(d) for d in dst]
    return [dst_c.index(canonical(s)) if canonical(s) in dst_c else -1 for s in src]


#: For each FER+ column (0..7), its index in FERPLUS8 (fervid order).
FERPLUS_TO_FERPLUS8: list[int] = index_map(FERPLUS, FERPLUS8)
