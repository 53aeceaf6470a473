"""The agreement grammar produces what it claims: labels = number of the subject's head noun, attractors =
intervening nouns of the opposite number, relative-clause verbs agreeing with their own subject."""

from __future__ import annotations

from collections import Counter

import pytest

from attrflow.data import agreement as grammar
from attrflow.data import load_dataset
from attrflow.data.agreement import AgreementSentence, generate_agreement, lexicon, noun_number

# present-tense verb forms of relative clauses and preambles -> number; past forms carry none
_VERB_NUMBER = {forms[n]: n for forms in (*grammar._VERBS, *grammar._SAY_VERBS) for n in (0, 1)}
_PAST = {forms[2] for forms in (*grammar._VERBS, *grammar._SAY_VERBS)}


@pytest.fixture(scope="module")
def sentences() -> list[AgreementSentence]:
    return generate_agreement(4000, seed=7)


def test_deterministic_and_seeded():
    assert generate_agreement(300, seed=1) == generate_agreement(300, seed=1)
    assert generate_agreement(300, seed=1) != generate_agreement(300, seed=2)
    # a longer run extends a shorter one: positions (hence splits) do not depend on the corpus size
    assert generate_agreement(500, seed=1)[:300] == generate_agreement(300, seed=1)


def test_sentences_are_distinct(sentences):
    assert len({s.words for s in sentences}) == len(sentences)


def test_label_is_the_number_of_the_head_noun(sentences):
    for s in sentences:
        assert noun_number(s.words[s.subject_index]) == s.label, s.text


def test_intervening_nouns_and_attractors(sentences):
    for s in sentences:
        after_subject = [i for i in range(s.subject_index + 1, len(s.words)) if noun_number(s.words[i]) is not None]
        assert list(s.intervening_indices) == after_subject, s.text
        opposite = [i for i in after_subject if noun_number(s.words[i]) != s.label]
        assert list(s.attractor_indices) == opposite, s.text
        assert s.has_attractor == bool(opposite)
        assert s.distance == len(s.words) - 1 - s.subject_index


def test_structures_have_their_noun_counts(sentences):
    expected = {
        "simple": 0,
        "pp": 1,
        "pp-pp": 2,
        "subject-rc": 1,
        "object-rc": 1,
        "object-rc-pp": 2,
        "pp-object-rc": 2,
        "subject-rc-pp": 2,
    }
    assert {s.structure for s in sentences} == set(expected)
    for s in sentences:
        assert len(s.intervening_indices) == expected[s.structure], s.text


def test_relative_clause_verbs_agree_with_their_own_subject(sentences):
    checked = 0
    for s in sentences:
        words = s.words
        if s.structure.startswith("subject-rc"):
            # "the N that (adv) V ...": V agrees with the head
            verb = next(w for w in words[s.subject_index + 2 :] if w in _VERB_NUMBER or w in _PAST)
            expected = s.label
        elif s.structure.startswith("object-rc") or s.structure == "pp-object-rc":
            # "... that the A ... V": V agrees with A, the first noun after the relative pronoun
            pronoun = max(i for i, w in enumerate(words) if w in ("that", "who") and i > s.subject_index)
            rc_subject = next(i for i in range(pronoun + 1, len(words)) if noun_number(words[i]) is not None)
            verb = next(w for w in words[rc_subject + 1 :] if w in _VERB_NUMBER or w in _PAST)
            expected = noun_number(words[rc_subject])
        else:
            continue
        if verb in _VERB_NUMBER:
            assert _VERB_NUMBER[verb] == expected, s.text
            checked += 1
    assert checked > 500


def test_distribution_is_balanced_and_rich(sentences):
    labels = Counter(s.label for s in sentences)
    assert 0.45 < labels[1] / len(sentences) < 0.55
    with_attractor = [s for s in sentences if s.has_attractor]
    assert 0.4 < len(with_attractor) / len(sentences) < 0.65
    # attractors occur with singular and with plural subjects
    assert {s.label for s in with_attractor} == {0, 1}
    assert max(len(s.attractor_indices) for s in sentences) == 2
    distances = Counter(s.distance for s in sentences)
    assert min(distances) == 0 and max(distances) >= 10
    assert 0.15 < sum(s.preamble for s in sentences) / len(sentences) < 0.35


def test_lexicon_covers_every_word(sentences):
    vocabulary = set(lexicon())
    assert len(vocabulary) == len(lexicon())
    for s in sentences:
        assert set(s.words) <= vocabulary, s.text
    assert all(s.verb in vocabulary for s in sentences)


def test_builtin_dataset_meta_matches_the_grammar():
    test = load_dataset("agreement", split="test")
    corpus = generate_agreement(len(test) * 10, seed=0)
    for example in test[:500]:
        sentence = corpus[example.meta["index"]]
        assert example.text == sentence.text and example.label == sentence.label
        assert example.meta["attractors"] == len(sentence.attractor_indices)
        assert example.meta["structure"] == sentence.structure
