"""Arabic normalisation for matching: pure functions, display text is never changed.

`normalize_for_matching(text)` folds the spelling variation of Arabic news text so that two
outlets' spellings of the same word compare equal:

  * Unicode NFKC (presentation forms and ligatures such as U+FEFB "ﻻ" become letters)
  * tashkeel (U+064B..U+065F, superscript alef U+0670, Quranic marks) and tatweel removed
  * alef forms أ إ آ ٱ -> ا ; hamza seats ؤ ئ -> ء (so مسؤول and مسئول meet)
  * ى -> ي ; ة -> ه ; Persian/Urdu letters ک ی ۀ ہ -> ك ي ه ه
  * Arabic-Indic (٠..٩) and Persian (۰..۹) digits -> ASCII ; ٫ -> "." ; ٬ dropped
  * bidi controls (LRM, RLM, LRE..RLO, LRI..PDI), ZWNJ, ZWJ, BOM removed
  * Arabic and Latin punctuation (، ؛ ؟ « » … # _ and friends) -> space
  * Latin text case-folded; runs of whitespace collapsed

`tokens(text)` splits the normalised text, drops stop words, strips clitic prefixes
(و ف ب ل ك, ال, وال, بال, فال, كال, لل, ...) and light suffixes, and returns the stems.

Stemmer comparison on the grouping evaluation (`python bench/grouping.py --stemmers`: gold
window 2018-03-12/13, 403 items; the same grouper, each stemmer at its own best story
threshold; story pairwise P / R / F1):

    stemmer          best F1 (threshold)               best F1 with P >= 0.9
    light (ours)     0.802 / 0.687 / 0.740  (0.26)     0.939 / 0.592 / 0.726  (0.30)
    prefixes only    0.878 / 0.606 / 0.717  (0.26)     0.919 / 0.521 / 0.665  (0.28)
    snowball-arabic  0.670 / 0.778 / 0.720  (0.22)     0.965 / 0.482 / 0.643  (0.34)
    isri (nltk)      0.626 / 0.824 / 0.711  (0.26)     0.949 / 0.521 / 0.673  (0.42)
    none             0.950 / 0.602 / 0.737  (0.26)     0.950 / 0.602 / 0.737  (0.26)

Snowball and ISRI conflate too much (root-like stems: distinct events share stems, so
precision needs a high threshold that costs recall). No stemming at all ties with the light
stemmer on this window (one or two pairs apart); the light stemmer is kept because it
gives the best F1 overall and generalises better off this window: topic pairwise F1
0.690 vs 0.677, ANS paraphrase-headline recall 0.899 vs 0.827, SemEval-2022 Pearson r
-0.445 vs -0.411 (light at 0.30, none at its best 0.26). ISRI needs `nltk` (bench only; not a runtime dependency).
"""
from __future__ import annotations

import re
import unicodedata

__all__ = [
    "normalize_for_matching",
    "tokens",
    "light_stem",
    "STOP_WORDS",
    "set_stemmer",
]

# --- character folding -------------------------------------------------------------------

_TASHKEEL = "".join(chr(c) for c in range(0x064B, 0x0660)) + "\u0670" + "".join(
    chr(c) for c in range(0x06D6, 0x06EE) if c not in (0x06E5, 0x06E6)
)
_INVISIBLE = "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e" \
             "\u2066\u2067\u2068\u2069\u061c\ufeff\u00ad"
_DELETE = _TASHKEEL + _INVISIBLE + "\u0640"  # + tatweel

_MAP = {
    "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ٲ": "ا", "ٳ": "ا",
    "ؤ": "ء", "ئ": "ء",
    "ى": "ي", "ی": "ي", "ې": "ي", "ۍ": "ي",
    "ة": "ه", "ۀ": "ه", "ہ": "ه", "ە": "ه", "ھ": "ه",
    "ک": "ك", "ڪ": "ك",
    "٫": ".", "٬": "",
}
for _i in range(10):
    _MAP[chr(0x0660 + _i)] = str(_i)  # Arabic-Indic digits
    _MAP[chr(0x06F0 + _i)] = str(_i)  # Persian (Extended Arabic-Indic) digits

_TABLE = str.maketrans({**_MAP, **{c: None for c in _DELETE}})  # reference version
# Faster than str.translate on non-ASCII text: one regex pass deletes, then a replace per
# mapped character actually present.
_DELETE_RE = re.compile("[" + re.escape(_DELETE) + "]")
_REPLACE = tuple(_MAP.items())

# A word: letters/digits (no underscore), with a "." kept only between digits (3.5).
# Everything else (punctuation of any script, symbols, "_", "#") separates words.
_WORD_RE = re.compile(r"[^\W_]+(?:\.\d+)*")


def _fold(text: str) -> str:
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    text = _DELETE_RE.sub("", text)
    for a, b in _REPLACE:
        if a in text:
            text = text.replace(a, b)
    return text.casefold()


def _words(text: str | None) -> list[str]:
    return _WORD_RE.findall(_fold(text)) if text else []


def normalize_for_matching(text: str | None) -> str:
    """Fold spelling variants; keep word boundaries. Pure; idempotent."""
    return " ".join(_words(text))


# --- stop words --------------------------------------------------------------------------
# Function words, the most generic newswire verbs/nouns (said, announced, today, ...) and
# format markers of headlines (watch, video, in pictures, infographic, breaking): they say
# nothing about which event an item reports.
_STOP_RAW = """
في من على الى إلى عن مع ان أن إن ما لا لم لن قد هل او أو ثم بل لكن حتى اذا إذا كما كان كانت
يكون تكون هذا هذه ذلك تلك هؤلاء الذي التي الذين اللذين اللتين اللاتي هو هي هم هن انا نحن انت
عند عندما بعد قبل بين خلال حول ضد منذ دون غير بعض كل جميع اي أي ايضا أيضا فقط الا إلا وقد فقد
لقد وكان وكانت وهو وهي وهذا وهذه فيه فيها منه منها عليه عليها اليه اليها له لها لهم به بها بهم
عنه عنها معه معها التى الى الي علي وفي ومن وعلى وان وأن ولا وما يتم تم حيث لدى لدي اما أما
اليوم امس أمس غدا الان الآن يوم قال قالت يقول تقول وقال وقالت اعلن أعلن اعلنت أعلنت ذكر ذكرت
اضاف أضاف اضافت أضافت اكد أكد اكدت أكدت وفق وفقا بحسب حسب نحو عام عاما سنه سنة مساء صباح
الاثنين الثلاثاء الاربعاء الأربعاء الخميس الجمعه الجمعة السبت الاحد الأحد
شاهد فيديو بالفيديو بالصور صور انفوجرافيك إنفوغرافيك انفوغراف عاجل
يا ليس لكي كي لان لأن مثل عبر اثر إثر جراء لدي وذلك وبعد وقبل ضمن امام أمام وراء تحت فوق
the a an of to in on for and or is are was were be by with at from as that this it its
"""
STOP_WORDS: frozenset[str] = frozenset(normalize_for_matching(w) for w in _STOP_RAW.split())

# --- light stemmer -----------------------------------------------------------------------
# Larkey-style light stemming (Light10 family): strip one clitic-article prefix and one
# inflectional suffix, keeping at least a 3-letter stem. Normalised spelling (ة -> ه).
_ARTICLES = ("وبال", "وكال", "وفال", "وال", "فال", "بال", "كال", "لل", "ال")
_CONJ = ("و", "ف")
_SUFFIXES = ("هما", "كما", "ات", "ان", "ون", "ين", "يه", "ها", "هم", "ه", "ي")
# A bare conjunction is stripped only from words of >= 6 letters (stem >= 5): shorter
# words start with و/ف as part of the word too often (وزير, وزارة, فيلم), and a wrong strip
# splits a word's spellings (وزارة vs الوزارة) instead of joining them. Measured on the
# gold window: stem >= 4 gave story pairwise F1 0.704, >= 5 gives 0.711.
CONJ_MIN_REST = 5


def strip_prefixes(word: str) -> str:
    """Strip clitic prefixes only (و ف, ال وال بال كال فال لل ...)."""
    if not word or not ("\u0621" <= word[0] <= "\u064a"):
        return word
    for p in _ARTICLES:
        if word.startswith(p) and len(word) - len(p) >= 3:
            return word[len(p):]
    if word[0] in _CONJ and len(word) - 1 >= CONJ_MIN_REST:
        return word[1:]
    return word


def light_stem(word: str) -> str:
    """Strip clitic prefixes (و ف, ال وال بال كال فال لل ...) and one light suffix.

    Non-Arabic tokens (Latin words, numbers) come back unchanged.
    """
    if not word or not ("\u0621" <= word[0] <= "\u064a"):
        return word
    for p in _ARTICLES:
        if word.startswith(p) and len(word) - len(p) >= 3:
            word = word[len(p):]
            break
    else:
        if word[0] in _CONJ and len(word) - 1 >= CONJ_MIN_REST:
            word = word[1:]
    for s in _SUFFIXES:
        if word.endswith(s) and len(word) - len(s) >= 3:
            word = word[: -len(s)]
            break
    return word


# --- stemmer selection (for the comparison in bench/grouping.py) ---------------------------

def _make_snowball():
    import snowballstemmer

    st = snowballstemmer.stemmer("arabic")
    return st.stemWord


def _make_isri():
    from nltk.stem.isri import ISRIStemmer  # optional: only for the comparison

    st = ISRIStemmer()
    return st.stem


_STEMMERS = {
    "light": lambda: light_stem,
    "prefix": lambda: strip_prefixes,
    "snowball": _make_snowball,
    "isri": _make_isri,
    "none": lambda: (lambda w: w),
}
_stem = light_stem
_stemmer_name = "light"


def set_stemmer(name: str) -> None:
    """Swap the stemmer used by tokens(): "light" (default), "snowball", "isri", "none"."""
    global _stem, _stemmer_name
    _stem = _STEMMERS[name]()
    _stemmer_name = name
    _TOKEN_CACHE.clear()


def stemmer_name() -> str:
    return _stemmer_name


# word -> stem, "" when the word is dropped. A plain dict of strings, not lru_cache: the
# garbage collector does not track it (lru_cache's links are lists it walks on every full
# collection, which the grouper's profile showed).
_TOKEN_CACHE: dict[str, str] = {}


def _stem_word(word: str) -> str:
    if _stemmer_name not in ("light", "prefix", "none") and word.isascii():
        return word
    s = _stem(word)
    return normalize_for_matching(s) if _stemmer_name in ("snowball", "isri") else s


def tokens(text: str | None) -> list[str]:
    """Matching tokens: normalised, stop words removed, stemmed, in text order.

    One-letter tokens are dropped; numbers are kept (they identify events: casualty
    counts, years, scores).
    """
    words = _words(text)
    cache = _TOKEN_CACHE
    stems = list(map(cache.get, words))  # C-level lookups: nearly every word is known
    if None in stems:
        if len(cache) > 500_000:
            cache.clear()
        for i, (w, s) in enumerate(zip(words, stems)):
            if s is None:
                s = stems[i] = cache[w] = _token(w)
    return [s for s in stems if s]


def _token(w: str) -> str:
    if (len(w) < 2 and not w.isdigit()) or w in STOP_WORDS:
        return ""
    s = _stem_word(w)
    return s if s and s not in STOP_WORDS else ""
