"""Feature–opinion extraction from review text: PEPLER's `template` quadruples in Python.

Source: the extraction idea is Zhang, Lai, Zhang, Zhang, Liu and Ma, "Explicit Factor Models
for Explainable Recommendation based on Phrase-level Sentiment Analysis", SIGIR 2014 (the
Java tool Sentires); PEPLER's datasets were built with it (lileipisces/Sentires-Guide) and
store one `template = (feature, adjective, sentence, sentiment ±1)` per record (METHODS §1).

No English part-of-speech model is installable from PyPI from its maintainers (spaCy's
models and NLTK's tagger data are hub/GitHub downloads; the PyPI copies are third-party
re-uploads), so this is a documented lexicon method with no dependency:

1. Sentences are split by regex on `.`/`!`/`?` and line breaks (also "end.Next", a common
   typo in Amazon reviews); clauses inside a sentence by `, ; : ( )` and "but", which bound
   the scope of a negation.
2. An opinion word is an adjective of the built-in `LEXICON` (about 250 common review
   adjectives with a prior polarity). Words whose polarity depends on the aspect ("cheap",
   "loud", "bright", "heavy", "thin", "tight" ...) are deliberately left out: precision over
   recall.
3. Its feature is a single word found by one of two patterns:
   - predicative: "<feature> is/was/sounds/feels/works (very|not ...) <adj>";
   - attributive: "<adj> <feature>" ("great tone"), taking the head of "<adj> <noun>
     quality|value" ("good sound quality" -> "quality").
   A feature candidate is an alphabetic word of 3+ letters outside `STOP` (function words,
   pronouns, common verbs and generic nouns such as "product", "thing", "job"), not an
   opinion word, not an "-ly" adverb. Features are single words because PEPLER's FMR/FCR
   match single tokens only (METHODS §2.4).
4. Sentiment is the adjective's polarity, flipped by a negator ("not", "n't", "never",
   "no", "hardly") up to three words before it in the same clause with only modifiers
   between: "not good" -> -1, "isn't very bad" -> +1, but "not the nice pockets" stays +1.
5. The feature vocabulary keeps candidates found in at least `min_count` reviews (each
   review counted once), as Sentires' lexicon step filters rare aspects.

`add_templates` picks one quadruple per record (rule in its docstring) and drops records
with none. Precision on 100 hand-checked sentences of the Amazon musical-instruments reviews
is in `tests/assets/feature_precision_100.jsonl` (see the tests for the number).
"""

from __future__ import annotations

import random
import re
import zlib
from collections import Counter
from collections.abc import Iterable

import pandas as pd

from whyrec.data import schema as S
from whyrec.data.dataset import RecDataset
from whyrec.data.pepler import OPINION, SENTIMENT
from whyrec.utils import WhyrecError

Quadruple = tuple[str, str, str, int]  # (feature, adjective, sentence, sentiment ±1)

_POSITIVE = """
good great excellent awesome amazing fantastic wonderful superb outstanding perfect nice fine
solid sturdy durable reliable decent impressive incredible terrific brilliant beautiful
gorgeous lovely clean clear crisp warm rich smooth punchy accurate precise responsive
comfortable easy simple handy useful versatile flexible convenient compact portable
lightweight affordable inexpensive reasonable superior fabulous stellar sweet cool neat
exceptional phenomenal marvelous magnificent remarkable flawless ideal adequate acceptable
satisfactory dependable rugged robust articulate balanced natural authentic vibrant lush
creamy silky buttery mellow powerful transparent noiseless intuitive straightforward quick
fast efficient effective functional practical attractive elegant sleek stylish classy
pleasant enjoyable fun playable comfy ergonomic secure snug firm consistent helpful
valuable worthwhile economical best better excellant awsome favorite beefy thick-sounding
well-made well-built sturdier smoother cleaner clearer warmer richer easier nicer
""".split()
_NEGATIVE = """
bad poor terrible awful horrible lousy crappy flimsy fragile weak broken defective faulty
useless worthless noisy buzzy muddy tinny harsh dull boring bland lifeless brittle shrill
piercing fizzy hissy staticky scratchy crackly uncomfortable awkward difficult complicated
confusing clunky bulky wobbly loose unstable unreliable inconsistent inaccurate imprecise
sloppy shoddy cheesy tacky ugly overpriced expensive pricey costly disappointing mediocre
subpar inferior annoying irritating frustrating problematic unusable rough jagged rusty
dirty sticky stiff slow laggy unresponsive wimpy anemic lame junky janky substandard
unacceptable inadequate insufficient worse worst horrid dreadful atrocious pathetic
ridiculous uneven crooked warped bent cracked damaged frayed unpleasant painful unsafe
microphonic boomy boxy nasal tubby flabby mushy sluggish plasticky chintzy rattly squeaky
creaky unbalanced misaligned incorrect wrong flaky finicky noisier weaker cheesier
""".split()
LEXICON: dict[str, int] = {**{w: 1 for w in _POSITIVE}, **{w: -1 for w in _NEGATIVE}}

NEGATORS = frozenset("not no never hardly barely nothing".split())
INTENSIFIERS = frozenset("""very really so quite pretty extremely super incredibly absolutely
totally fairly rather reasonably amazingly surprisingly remarkably exceptionally relatively
especially truly just also still even always overall all more most much too somewhat
definitely generally usually certainly simply overly insanely ridiculously""".split())
# Verbs linking a subject to its adjective: "the tuner works great", "strings feel smooth".
LINKING = frozenset("""is was are were be been being seems seemed seem sounds sounded sound
feels felt feel looks looked look works worked work performs performed stays stayed holds
held plays played remains remained stay hold""".split())
# Linking verbs that are never nouns ("sound", "feel", "look" are features too).
_VERB_ONLY = frozenset("is was are were be been being seems seemed seem performs performed".split())
# Auxiliaries between a subject and its linking verb: "the strap doesn't feel", "will stay".
_AUXILIARIES = frozenset("do does did will would can could has have had may might should".split())
# Head nouns that take the aspect slot in "<adj> <noun> quality": "good sound quality".
HEADS = frozenset({"quality", "value"})
STOP = frozenset("""the a an this that these those it its it's they them their there here
he she him her his hers we us our you your i me my mine one ones what which who whom whose
and or but nor for with without from into onto upon over under about above below between
after before during through of off out in on at by to up down as than then so if because
while when where why how all any both each few many more most other some such only own same
just also very too can will would should could may might must shall do does did done doing
have has had having get gets got getting make makes made use used uses using buy bought
need needs want wants try tried put take took give gave go goes went come came see saw say
said know knew think thought find found look looking keep kept let like liked love loved
product products item items thing things stuff lot lots bit job deal purchase choice idea
way ways time times day days week weeks month months year years everything something
anything nothing someone anyone everyone amazon star stars review reviews reviewer money
luck touch enough addition kind sort part parts case cases price-wise overall again still
even ever never not yes well much many less least lot alot imo though although however
really actually quite pretty rather now today yet already since until unless
little bright sounding looking performing feeling state right name itself forward acoustic
electric spot amount ear solution solutions results option options feature features piece
unit units device devices tool tools system set sets""".split())

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[a-z][.!?])(?=[A-Z])|\s*\n+\s*")
_CLAUSE_BREAK = re.compile(r"[,;:()]|\s-\s|\bbut\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z][a-z'-]*")


def split_sentences(text: str) -> list[str]:
    """Sentences of a review (regex, no model): non-empty, stripped."""
    return [s.strip() for s in _SENTENCE_END.split(text or "") if s and s.strip()]


def _words(clause: str) -> list[str]:
    # "isn't" -> "is not" and "cannot" -> "can not" so negation is one token.
    clause = clause.lower().replace("n't", " not").replace("cannot", "can not")
    return [w.strip("'-") for w in _WORD.findall(clause)]


def is_candidate(word: str) -> bool:
    """Could `word` be a product aspect? (no POS model: a stop list and shape tests)"""
    return (len(word) >= 3 and word.isalpha() and word not in STOP and word not in LEXICON
            and word not in INTENSIFIERS and word not in _VERB_ONLY and not word.endswith("ly"))


_NEGATION_GAP = INTENSIFIERS | LINKING | {"as", "a", "an"}


def _sentiment(words: list[str], i: int) -> int:
    """The adjective's polarity, flipped by a negator up to three words before it with only
    modifiers between ("not very good", "isn't as good"); "not the nice pockets" keeps +1
    because there the negation is about something else."""
    sign = LEXICON[words[i]]
    for j in range(i - 1, max(-1, i - 4), -1):
        if words[j] in NEGATORS:
            return -sign
        if words[j] not in _NEGATION_GAP:
            break
    return sign


def _with_head(words: list[str], j: int) -> str:
    """words[j], or the head noun right after it ("sound quality" -> "quality")."""
    return words[j + 1] if j + 1 < len(words) and words[j + 1] in HEADS else words[j]


def _predicative(words: list[str], i: int) -> str | None:
    """'<feature> is (not very) <adj>': walk back over modifiers to a linking verb."""
    j = i - 1
    while j >= 0 and i - j <= 4 and (words[j] in INTENSIFIERS or words[j] in NEGATORS):
        j -= 1
    if j < 1 or words[j] not in LINKING:
        return None
    j -= 1
    while j >= 0 and (words[j] in _AUXILIARIES or words[j] in NEGATORS or words[j] in INTENSIFIERS
                      or words[j] in _VERB_ONLY):  # "never seemed", "does not feel", "is looking"
        j -= 1
    return words[j] if j >= 0 and is_candidate(words[j]) else None


def _attributive(words: list[str], i: int) -> str | None:
    """'<adj> <feature>': the word right after the adjective."""
    j = i + 1
    return _with_head(words, j) if j < len(words) and is_candidate(words[j]) else None


def clause_pairs(clause: str) -> list[tuple[str, str, int]]:
    """(feature, adjective, sentiment) pairs of one clause, in reading order."""
    words, out = _words(clause), []
    for i, word in enumerate(words):
        if word not in LEXICON:
            continue
        feature = _predicative(words, i) or _attributive(words, i)
        if feature:
            out.append((feature, word, _sentiment(words, i)))
    return out


def extract_quadruples(text: str, vocabulary: Iterable[str] | None = None) -> list[Quadruple]:
    """Every (feature, adjective, sentence, sentiment ±1) in a review, in reading order.

    Args:
        text: the review.
        vocabulary: keep only these features (see `build_feature_vocabulary`); None keeps
            every candidate.
    """
    keep = None if vocabulary is None else set(vocabulary)
    out: list[Quadruple] = []
    for sentence in split_sentences(text):
        for clause in _CLAUSE_BREAK.split(sentence):
            for feature, adj, sign in clause_pairs(clause):
                if keep is None or feature in keep:
                    out.append((feature, adj, sentence, sign))
    return list(dict.fromkeys(out))  # a sentence repeating a pair counts once


def build_feature_vocabulary(texts: Iterable[str], min_count: int = 5) -> dict[str, int]:
    """Features found in at least `min_count` texts -> that number, most frequent first."""
    if min_count < 1:
        raise WhyrecError(f"min_count must be at least 1, got {min_count}")
    counts = Counter()
    for text in texts:
        counts.update({q[0] for q in extract_quadruples(text)})
    return {f: c for f, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count}


def choose_quadruple(quads: list[Quadruple], user: str, item: str, seed: int,
                     max_words: int) -> Quadruple | None:
    """One quadruple per record: seeded uniform choice among those whose sentence has
    3..`max_words` words (all of them if none does). The RNG is seeded by the CRC32 of
    "seed|user|item", so the choice is stable across row order and sampling."""
    if not quads:
        return None
    short = [q for q in quads if 3 <= len(q[2].split()) <= max_words]
    rng = random.Random(zlib.crc32(f"{seed}|{user}|{item}".encode()))
    return rng.choice(short or quads)


def add_templates(ds: RecDataset, min_count: int = 5, seed: int = 42, max_words: int = 30,
                  text_col: str = S.REVIEW) -> RecDataset:
    """Fill `feature`, `opinion`, `sentiment` and `explanation` (the chosen sentence).

    The vocabulary is built from all reviews of `ds` (as Sentires runs on the whole
    corpus); records without any quadruple are dropped and counted in
    `ds.meta["templates"]["dropped_no_template"]`. Returns `ds`, changed in place.
    """
    if text_col not in ds.interactions:
        raise WhyrecError(f"interactions have no {text_col!r} column (have: "
                          f"{', '.join(map(str, ds.interactions.columns))}); extraction needs review text")
    inter = ds.interactions.reset_index(drop=True)
    texts = inter[text_col].fillna("").astype(str).tolist()
    vocab = build_feature_vocabulary(texts, min_count)
    chosen = [choose_quadruple(extract_quadruples(t, vocab), u, i, seed, max_words)
              for t, u, i in zip(texts, inter[S.USER], inter[S.ITEM], strict=True)]
    keep = [q is not None for q in chosen]
    kept = [q for q in chosen if q is not None]
    inter = inter[keep].reset_index(drop=True)
    inter[S.FEATURE] = [q[0] for q in kept]
    inter[OPINION] = [q[1] for q in kept]
    inter[S.EXPLANATION] = [q[2] for q in kept]
    inter[SENTIMENT] = pd.array([q[3] for q in kept], dtype="int8")
    if len(inter) == 0:
        raise WhyrecError(f"no review yields a feature–opinion pair with min_count={min_count}; lower it")
    ds.interactions = inter
    ds.meta = {**ds.meta, "templates": {
        "method": "whyrec lexicon (Sentires-style)", "min_count": min_count, "seed": seed,
        "max_words": max_words, "records_in": len(texts), "dropped_no_template": keep.count(False),
        "features": len(vocab)}}
    return ds
