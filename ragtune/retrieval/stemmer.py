"""English stemmers for BM25: Porter (pure Python), S-stemmer, optional Snowball.

`porter_stem` follows Martin Porter's reference implementation (the C/Python
version on tartarus.org, which Lucene's `PorterStemFilter` -- and so the
Elasticsearch "english" analyzer behind BEIR's BM25 numbers -- also follows).
It differs from the 1980 paper in two step-2 rules: "bli"->"ble" (paper:
"abli"->"able") and the added "logi"->"log".

M. F. Porter, "An algorithm for suffix stripping", Program 14(3), 1980.
D. Harman, "How effective is suffixing?", JASIS 42(1), 1991 (S-stemmer).
"""

from __future__ import annotations

from collections.abc import Callable

_VOWELS = frozenset("aeiou")


def _is_cons(w: str, i: int) -> bool:
    # 'y' is a consonant at the start of a word or after a vowel, else a vowel.
    c = w[i]
    if c in _VOWELS:
        return False
    if c == "y":
        return i == 0 or not _is_cons(w, i - 1)
    return True


def _measure(stem: str) -> int:
    """m in [C](VC)^m[V]: the number of vowel->consonant transitions."""
    m, prev_vowel = 0, False
    for i in range(len(stem)):
        cons = _is_cons(stem, i)
        if cons and prev_vowel:
            m += 1
        prev_vowel = not cons
    return m


def _has_vowel(stem: str) -> bool:
    return any(not _is_cons(stem, i) for i in range(len(stem)))


def _double_cons(w: str) -> bool:
    return len(w) >= 2 and w[-1] == w[-2] and _is_cons(w, len(w) - 1)


def _cvc(w: str) -> bool:
    # *o: ends consonant-vowel-consonant, last one not w, x or y (hop(e), fil(e)).
    return (
        len(w) >= 3
        and _is_cons(w, len(w) - 3)
        and not _is_cons(w, len(w) - 2)
        and _is_cons(w, len(w) - 1)
        and w[-1] not in "wxy"
    )


def _replace_longest(w: str, rules: tuple[tuple[str, str], ...], min_m: int) -> str:
    # Only the longest matching suffix is considered; if its condition fails the
    # word is left alone (the other rules are not tried).
    for suffix, repl in rules:
        if w.endswith(suffix):
            stem = w[: len(w) - len(suffix)]
            return stem + repl if _measure(stem) > min_m else w
    return w


# Sorted longest-first within each step so the first hit is the longest match.
# fmt: off
_STEP2 = tuple(sorted((
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"),
    ("izer", "ize"), ("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"),
    ("ousli", "ous"), ("ization", "ize"), ("ation", "ate"), ("ator", "ate"),
    ("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"),
    ("aliti", "al"), ("iviti", "ive"), ("biliti", "ble"), ("logi", "log"),
), key=lambda r: -len(r[0])))
_STEP3 = tuple(sorted((
    ("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"),
    ("ical", "ic"), ("ful", ""), ("ness", ""),
), key=lambda r: -len(r[0])))
_STEP4 = tuple(sorted((
    "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent",
    "ion", "ou", "ism", "ate", "iti", "ous", "ive", "ize",
), key=len, reverse=True))
# fmt: on


def _step1ab(w: str) -> str:
    if w.endswith("sses") or w.endswith("ies"):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    if w.endswith("eed"):
        return w[:-1] if _measure(w[:-3]) > 0 else w
    for suffix in ("ed", "ing"):
        if w.endswith(suffix) and _has_vowel(w[: -len(suffix)]):
            w = w[: -len(suffix)]
            if w.endswith(("at", "bl", "iz")):
                return w + "e"
            if _double_cons(w) and w[-1] not in "lsz":
                return w[:-1]
            if _measure(w) == 1 and _cvc(w):
                return w + "e"
            return w
    return w


def _step4(w: str) -> str:
    for suffix in _STEP4:
        if w.endswith(suffix):
            stem = w[: len(w) - len(suffix)]
            if suffix == "ion" and not stem.endswith(("s", "t")):
                return w
            return stem if _measure(stem) > 1 else w
    return w


def _step5(w: str) -> str:
    if w.endswith("e"):
        m = _measure(w[:-1])
        if m > 1 or (m == 1 and not _cvc(w[:-1])):
            w = w[:-1]
    if w.endswith("ll") and _measure(w) > 1:
        w = w[:-1]
    return w


def porter_stem(word: str) -> str:
    """Porter (1980) stem of a lowercase word, e.g. "relational" -> "relat"."""
    if len(word) <= 2:  # the reference implementation leaves these alone
        return word
    w = _step1ab(word)
    if w.endswith("y") and _has_vowel(w[:-1]):  # step 1c
        w = w[:-1] + "i"
    w = _replace_longest(w, _STEP2, 0)
    w = _replace_longest(w, _STEP3, 0)
    return _step5(_step4(w))


def s_stem(word: str) -> str:
    """Harman's S-stemmer, plurals only, as Lucene's EnglishMinimalStemmer reads it:
    -ies -> -y (not -aies/-eies), -es -> -e (not -aes/-ees/-oes), -s -> '' (not -us/-ss)."""
    if len(word) < 3 or word[-1] != "s" or word[-2] in "us":
        return word
    if word[-2] == "e":
        if len(word) > 3 and word[-3] == "i" and word[-4] not in "ae":
            return word[:-3] + "y"
        if word[-3] in "iaoe":  # -ies (excluded above), -aes, -oes, -ees stay as they are
            return word
    return word[:-1]


def get_stemmer(name: str) -> Callable[[str], str]:
    """Return a word -> stem function.

    "porter": pure-Python Porter (always available). "snowball": Porter2 via the
    optional PyStemmer package. "s": S-stemmer. "none": identity.
    """
    if name == "porter":
        return porter_stem
    if name == "s":
        return s_stem
    if name == "none":
        return lambda w: w
    if name == "snowball":
        try:
            import Stemmer  # PyStemmer, optional extra
        except ImportError as e:
            raise ImportError(
                "stemmer='snowball' needs PyStemmer: pip install 'ragtune[bm25]' "
                "(or use stemmer='porter', the pure-Python default)"
            ) from e
        return Stemmer.Stemmer("english").stemWord
    raise ValueError(f"unknown stemmer {name!r}; choose porter, snowball, s or none")
