"""A synthetic subject–verb number agreement corpus, after Linzen, Dupoux & Goldberg (TACL 2016).

Abnar & Zuidema (ACL 2020) study attention flow on a classifier that reads an English sentence up to its main
verb and predicts whether the verb is singular or plural. Their data are Linzen et al.'s Wikipedia sentences,
which cannot be downloaded here, so attrflow generates sentences of the same kind from a small grammar:

- the subject is a singular or plural noun phrase (determiner, 0–2 adjectives, head noun);
- the subject may be modified by prepositional phrases ("the key **to the cabinets**") and by subject or object
  relative clauses ("the author **that the guards like**"); the nouns inside them are *intervening nouns*, and
  those whose number differs from the subject's are *attractors* (the cases where models and people err);
- relative-clause verbs agree with their own subject, or are in the past tense and carry no number;
- an optional preamble ("the manager says that", "we know that") and adverbs before the verb vary the distance.

The input is the sentence up to (not including) the verb; the label is the number of the verb: 0 = singular,
1 = plural. Generation is deterministic for a seed, sentences are unique, and each sentence's split is fixed by
its position (index % 10 == 0 → test, == 1 → validation, otherwise train), so the splits are disjoint.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "LABEL_NAMES",
    "AgreementSentence",
    "generate_agreement",
    "lexicon",
    "noun_number",
]

LABEL_NAMES: tuple[str, str] = ("singular", "plural")
Number = Literal[0, 1]
SINGULAR: Number = 0
PLURAL: Number = 1

# (singular, plural)
_ANIMATE: tuple[tuple[str, str], ...] = (
    ("author", "authors"), ("pilot", "pilots"), ("surgeon", "surgeons"), ("farmer", "farmers"),
    ("manager", "managers"), ("customer", "customers"), ("senator", "senators"), ("teacher", "teachers"),
    ("student", "students"), ("doctor", "doctors"), ("lawyer", "lawyers"), ("painter", "painters"),
    ("dancer", "dancers"), ("officer", "officers"), ("guard", "guards"), ("minister", "ministers"),
    ("architect", "architects"), ("banker", "bankers"), ("singer", "singers"), ("athlete", "athletes"),
    ("child", "children"), ("woman", "women"), ("man", "men"), ("nurse", "nurses"), ("driver", "drivers"),
    ("soldier", "soldiers"), ("writer", "writers"), ("friend", "friends"), ("neighbour", "neighbours"),
    ("player", "players"), ("judge", "judges"), ("actor", "actors"),
)  # fmt: skip
_INANIMATE: tuple[tuple[str, str], ...] = (
    ("key", "keys"), ("table", "tables"), ("house", "houses"), ("car", "cars"), ("garden", "gardens"),
    ("door", "doors"), ("window", "windows"), ("building", "buildings"), ("road", "roads"), ("river", "rivers"),
    ("tree", "trees"), ("box", "boxes"), ("bridge", "bridges"), ("park", "parks"), ("office", "offices"),
    ("picture", "pictures"), ("book", "books"), ("city", "cities"), ("village", "villages"),
    ("church", "churches"), ("computer", "computers"), ("machine", "machines"), ("bottle", "bottles"),
    ("lake", "lakes"), ("cabinet", "cabinets"), ("report", "reports"), ("letter", "letters"),
    ("painting", "paintings"), ("story", "stories"), ("shop", "shops"),
)  # fmt: skip
# transitive verbs of relative clauses: (3rd singular, plural, past — which carries no number)
_VERBS: tuple[tuple[str, str, str], ...] = (
    ("likes", "like", "liked"), ("sees", "see", "saw"), ("knows", "know", "knew"),
    ("admires", "admire", "admired"), ("hates", "hate", "hated"), ("loves", "love", "loved"),
    ("visits", "visit", "visited"), ("watches", "watch", "watched"), ("praises", "praise", "praised"),
    ("helps", "help", "helped"), ("follows", "follow", "followed"), ("remembers", "remember", "remembered"),
    ("avoids", "avoid", "avoided"), ("meets", "meet", "met"), ("describes", "describe", "described"),
    ("needs", "need", "needed"), ("finds", "find", "found"), ("trusts", "trust", "trusted"),
    ("blames", "blame", "blamed"), ("thanks", "thank", "thanked"),
)  # fmt: skip
# verbs of the preamble clause "X says that ...": (3rd singular, plural, past)
_SAY_VERBS: tuple[tuple[str, str, str], ...] = (
    ("says", "say", "said"), ("thinks", "think", "thought"), ("believes", "believe", "believed"),
    ("knows", "know", "knew"), ("hopes", "hope", "hoped"), ("claims", "claim", "claimed"),
    ("hears", "hear", "heard"),
)  # fmt: skip
_PRONOUNS: tuple[tuple[str, Number], ...] = (
    ("he", SINGULAR), ("she", SINGULAR), ("everyone", SINGULAR), ("we", PLURAL), ("they", PLURAL), ("you", PLURAL),
)  # fmt: skip
# main verbs that would follow the input (only recorded, never part of the input): (singular, plural)
_MAIN_VERBS: tuple[tuple[str, str], ...] = (
    ("is", "are"), ("was", "were"), ("has", "have"), ("seems", "seem"), ("remains", "remain"),
    ("looks", "look"), ("works", "work"), ("stays", "stay"),
)  # fmt: skip
_ADJECTIVES: tuple[str, ...] = (
    "old", "young", "tall", "famous", "new", "angry", "happy", "clever", "quiet", "brave", "rich", "tired",
    "polite", "strange", "small", "large", "red", "broken", "empty", "modern",
)  # fmt: skip
_ADVERBS: tuple[str, ...] = (
    "often", "certainly", "probably", "never", "always", "usually", "clearly", "really", "rarely",
    "sometimes", "also", "still",
)  # fmt: skip
_PREPOSITIONS: tuple[str, ...] = (
    "near", "behind", "beside", "with", "from", "without", "under", "above", "of", "to", "for", "next to",
    "in front of",
)  # fmt: skip
_NEUTRAL_DETERMINERS: tuple[str, ...] = ("the", "my", "our", "your", "his", "her", "their")
_NUMBER_DETERMINERS: tuple[str, str] = ("this", "these")

# The shapes of the subject phrase and how often each is drawn. N = head, A = intervening noun.
_STRUCTURES: tuple[tuple[str, float], ...] = (
    ("simple", 0.14),  # the N
    ("pp", 0.24),  # the N P the A
    ("pp-pp", 0.08),  # the N P the A P the A
    ("subject-rc", 0.12),  # the N that V(N) the A
    ("object-rc", 0.20),  # the N that the A V(A)
    ("object-rc-pp", 0.07),  # the N that the A P the A V(A)
    ("pp-object-rc", 0.08),  # the N P the A that the A V(A)
    ("subject-rc-pp", 0.07),  # the N that V(N) the A P the A
)


@dataclass(frozen=True)
class AgreementSentence:
    """One generated sentence prefix and what the grammar knows about it.

    Attributes:
        words: the input, the sentence up to (not including) its main verb.
        label: the number of the main verb (and of the subject's head noun): 0 singular, 1 plural.
        subject_index: position in ``words`` of the subject's head noun.
        intervening_indices: positions of the nouns between the head noun and the verb.
        attractor_indices: the intervening nouns whose number differs from the subject's (a subset).
        structure: the shape of the subject phrase (``"simple"``, ``"pp"``, ``"object-rc"``, ...).
        preamble: whether the sentence starts with a clause such as "the manager says that".
        verb: the main verb that would follow, in the right number (never part of the input).
        noun_indices: positions of every head noun in ``words`` (the preamble's too), the subject's included.
    """

    words: tuple[str, ...]
    label: int
    subject_index: int
    intervening_indices: tuple[int, ...]
    attractor_indices: tuple[int, ...]
    structure: str
    preamble: bool
    verb: str
    noun_indices: tuple[int, ...] = ()

    @property
    def text(self) -> str:
        """The input as one space-separated string."""
        return " ".join(self.words)

    @property
    def distance(self) -> int:
        """How many words separate the subject's head noun from the verb."""
        return len(self.words) - 1 - self.subject_index

    @property
    def has_attractor(self) -> bool:
        """Whether a noun of the opposite number stands between the subject and the verb."""
        return bool(self.attractor_indices)


class _Builder:
    """Accumulates the words of one sentence and the positions of its nouns."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.words: list[str] = []
        self.nouns: list[tuple[int, Number]] = []

    def add(self, *words: str) -> None:
        for chunk in words:
            self.words.extend(chunk.split())

    def noun_phrase(self, number: Number, *, animate: bool | None = None, adjectives: float = 0.35) -> int:
        """Append "det (adj) (adj) noun" and return the position of the noun."""
        rng = self.rng
        if rng.random() < 0.08:
            self.add(_NUMBER_DETERMINERS[number])
        else:
            self.add("the" if rng.random() < 0.75 else rng.choice(_NEUTRAL_DETERMINERS[1:]))
        for _ in range(2):
            if rng.random() < adjectives:
                self.add(rng.choice(_ADJECTIVES))
            adjectives /= 3
        if animate is None:
            animate = rng.random() < 0.6
        self.add(rng.choice(_ANIMATE if animate else _INANIMATE)[number])
        position = len(self.words) - 1
        self.nouns.append((position, number))
        return position

    def verb(self, number: Number, *, verbs: Sequence[tuple[str, str, str]] = _VERBS, past: float = 0.35) -> None:
        forms = self.rng.choice(verbs)
        self.add(forms[2] if self.rng.random() < past else forms[number])

    def adverbs(self, probability: float) -> None:
        if self.rng.random() < probability:
            self.add(self.rng.choice(_ADVERBS))

    def preposition(self) -> None:
        self.add(self.rng.choice(_PREPOSITIONS))

    def relative_pronoun(self, animate: bool) -> None:
        self.add("that" if not animate or self.rng.random() < 0.6 else "who")


def _draw_number(rng: random.Random) -> Number:
    return PLURAL if rng.random() < 0.5 else SINGULAR


def _sentence(rng: random.Random) -> AgreementSentence:
    b = _Builder(rng)
    preamble = rng.random() < 0.25
    if preamble:
        if rng.random() < 0.5:
            pronoun, number = rng.choice(_PRONOUNS)
            b.add(pronoun)
        else:
            number = _draw_number(rng)
            b.noun_phrase(number, animate=True, adjectives=0.2)
        b.verb(number, verbs=_SAY_VERBS, past=0.4)
        b.add("that")
    nouns_before_subject = len(b.nouns)

    structure = rng.choices([s for s, _ in _STRUCTURES], weights=[w for _, w in _STRUCTURES])[0]
    label = _draw_number(rng)
    # every intervening noun's number is drawn independently: half of them disagree with the subject
    head_animate = structure.startswith("subject-rc") or rng.random() < 0.6
    subject_index = b.noun_phrase(label, animate=head_animate)

    if structure in ("pp", "pp-pp", "pp-object-rc"):
        b.preposition()
        b.noun_phrase(_draw_number(rng), adjectives=0.25)
        if structure == "pp-pp":
            b.preposition()
            b.noun_phrase(_draw_number(rng), adjectives=0.2)
        if structure == "pp-object-rc":
            b.relative_pronoun(animate=False)
            rc_number = _draw_number(rng)
            b.noun_phrase(rc_number, animate=True, adjectives=0.2)
            b.adverbs(0.15)
            b.verb(rc_number)
    elif structure in ("subject-rc", "subject-rc-pp"):
        b.relative_pronoun(animate=True)
        b.adverbs(0.15)
        b.verb(label)
        b.noun_phrase(_draw_number(rng), adjectives=0.25)
        if structure == "subject-rc-pp":
            b.preposition()
            b.noun_phrase(_draw_number(rng), adjectives=0.2)
    elif structure in ("object-rc", "object-rc-pp"):
        b.relative_pronoun(animate=head_animate)
        rc_number = _draw_number(rng)
        b.noun_phrase(rc_number, animate=True, adjectives=0.25)
        if structure == "object-rc-pp":
            b.preposition()
            b.noun_phrase(_draw_number(rng), adjectives=0.2)
        b.adverbs(0.15)
        b.verb(rc_number)
    b.adverbs(0.3)

    intervening = tuple(pos for pos, _ in b.nouns[nouns_before_subject + 1 :])
    attractors = tuple(pos for pos, number in b.nouns[nouns_before_subject + 1 :] if number != label)
    return AgreementSentence(
        words=tuple(b.words),
        label=label,
        subject_index=subject_index,
        intervening_indices=intervening,
        attractor_indices=attractors,
        structure=structure,
        preamble=preamble,
        verb=rng.choice(_MAIN_VERBS)[label],
        noun_indices=tuple(pos for pos, _ in b.nouns),
    )


def generate_agreement(count: int, *, seed: int = 0) -> list[AgreementSentence]:
    """Generate ``count`` distinct agreement sentences, deterministically for a given ``seed``.

    Args:
        count: how many sentences (distinct inputs: a repeated prefix is drawn again).
        seed: the seed of the generator; the same seed always gives the same list.

    Returns:
        The sentences in generation order; position ``i`` belongs to the test split when ``i % 10 == 0``, to
        validation when ``i % 10 == 1``, else to train.
    """
    rng = random.Random(seed)
    seen: set[tuple[str, ...]] = set()
    sentences: list[AgreementSentence] = []
    while len(sentences) < count:
        sentence = _sentence(rng)
        if sentence.words not in seen:
            seen.add(sentence.words)
            sentences.append(sentence)
    return sentences


def lexicon() -> list[str]:
    """Every word the grammar can produce, in a fixed order (the vocabulary of the agreement model)."""
    words: list[str] = []
    for pair in (*_ANIMATE, *_INANIMATE):
        words.extend(pair)
    for forms in (*_VERBS, *_SAY_VERBS):
        words.extend(forms)
    words.extend(p for p, _ in _PRONOUNS)
    words.extend(_ADJECTIVES)
    words.extend(_ADVERBS)
    for preposition in _PREPOSITIONS:
        words.extend(preposition.split())
    words.extend((*_NEUTRAL_DETERMINERS, *_NUMBER_DETERMINERS, "that", "who"))
    for forms2 in _MAIN_VERBS:
        words.extend(forms2)
    return list(dict.fromkeys(words))


def noun_number(word: str) -> int | None:
    """The grammatical number of a noun of the lexicon (0 singular, 1 plural), or None for other words."""
    return _NOUN_NUMBER.get(word)


_NOUN_NUMBER: dict[str, int] = {form: number for pair in (*_ANIMATE, *_INANIMATE) for number, form in enumerate(pair)}
