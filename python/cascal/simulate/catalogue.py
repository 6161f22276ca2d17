"""The simulated world's subjects: a description, general words and 3 niches of topical words each.

Generated questions are built from these words, so question embeddings cluster by subject and, inside
a subject, by niche. Simulated pool models recognise a question's niche from the same words (the
niche whose words occur most often in the prompt), which is how their skill can depend on the niche.
Niche word lists are disjoint across the whole catalogue so that recognition is unambiguous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Niche:
    """A narrow topic inside a subject, e.g. genetics inside biology."""

    name: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class Subject:
    """One task of the simulated world: what a ``tasks.yaml`` entry describes."""

    key: str
    description: str
    general_words: tuple[str, ...]
    niches: tuple[Niche, ...]


def _niche(name: str, words: str) -> Niche:
    return Niche(name, tuple(words.split()))


SUBJECTS: tuple[Subject, ...] = (
    Subject(
        "biology",
        "Undergraduate biology questions on genetics, cell biology and ecology.",
        tuple("organism biology living species cells".split()),
        (
            _niche(
                "genetics",
                "allele chromosome mutation genotype phenotype heterozygous recombination meiosis dominant recessive locus pedigree",
            ),
            _niche(
                "cell biology",
                "mitochondria ribosome membrane cytoskeleton organelle vesicle endocytosis lysosome nucleus golgi cytoplasm microtubule",
            ),
            _niche(
                "ecology",
                "predator biome ecosystem trophic population biodiversity habitat succession symbiosis invasive keystone herbivore",
            ),
        ),
    ),
    Subject(
        "chemistry",
        "College chemistry questions on organic reactions, thermodynamics and electrochemistry.",
        tuple("chemical compound reaction molecule laboratory".split()),
        (
            _niche(
                "organic chemistry",
                "alkene benzene nucleophile carbonyl ester stereocenter aromatic alkyl substitution elimination aldehyde chirality",
            ),
            _niche(
                "thermodynamics",
                "enthalpy entropy equilibrium gibbs calorimetry kinetics activation catalyst exothermic endothermic spontaneity heat",
            ),
            _niche(
                "electrochemistry",
                "titration electrode oxidation reduction galvanic electrolysis buffer acidity molarity indicator absorbance cathode",
            ),
        ),
    ),
    Subject(
        "law",
        "Bar-exam style law questions on contracts, criminal law and constitutional law.",
        tuple("court legal statute plaintiff defendant".split()),
        (
            _niche(
                "contracts",
                "offer acceptance consideration breach damages warranty promissory estoppel rescission parol counteroffer repudiation",
            ),
            _niche(
                "criminal law",
                "mens rea homicide burglary larceny accomplice conspiracy manslaughter entrapment insanity felony intent",
            ),
            _niche(
                "constitutional law",
                "amendment commerce clause process federalism speech establishment standing congress supremacy judicial review",
            ),
        ),
    ),
    Subject(
        "economics",
        "Economics questions on microeconomics, macroeconomics and international trade.",
        tuple("market economy economic policy price".split()),
        (
            _niche(
                "microeconomics",
                "elasticity monopoly marginal utility oligopoly consumer surplus ceiling externality demand supply cartel",
            ),
            _niche(
                "macroeconomics",
                "inflation unemployment gdp fiscal monetary recession aggregate multiplier deflation stagflation interest bank",
            ),
            _niche(
                "international trade",
                "tariff comparative advantage exchange currency exports imports quota payments devaluation protectionism dumping",
            ),
        ),
    ),
    Subject(
        "history",
        "World history questions on the ancient world, the middle ages and the modern era.",
        tuple("historian period century society ruler".split()),
        (
            _niche(
                "ancient world",
                "pharaoh republic senate legion empire hellenistic papyrus consul gladiator pyramid athens sparta",
            ),
            _niche(
                "middle ages", "feudal serf crusade monastery knight manor vassal plague guild cathedral pope charter"
            ),
            _niche(
                "modern era",
                "industrialization revolution colonialism treaty nationalism armistice suffrage decolonization trench parliament propaganda cold",
            ),
        ),
    ),
    Subject(
        "physics",
        "Physics questions on mechanics, electromagnetism and quantum physics.",
        tuple("physical system energy force experiment".split()),
        (
            _niche(
                "mechanics",
                "velocity acceleration momentum torque friction projectile inertia pendulum collision newton kinematics angular",
            ),
            _niche(
                "electromagnetism",
                "capacitor inductor resistor magnetic flux voltage current coulomb faraday circuit charge solenoid",
            ),
            _niche(
                "quantum physics",
                "photon wavefunction electron uncertainty tunneling spin quantum photoelectric orbital planck eigenstate entanglement",
            ),
        ),
    ),
)

SUBJECTS_BY_KEY: dict[str, Subject] = {s.key: s for s in SUBJECTS}

#: (subject index, niche index) for every niche word of the catalogue.
_WORD_TO_NICHE: dict[str, tuple[int, int]] = {
    word: (si, ni)
    for si, subject in enumerate(SUBJECTS)
    for ni, niche in enumerate(subject.niches)
    for word in niche.words
}

_WORD = re.compile(r"[a-z]+")


def words_of(text: str) -> list[str]:
    """Lower-case alphabetic words of ``text``."""
    return _WORD.findall(text.lower())


def match_subject(text: str) -> Subject:
    """The catalogue subject whose name, general and niche words occur most often in ``text``.

    Used by the simulated generator to understand a subject description it is asked to write for.
    An unrelated description still gets a subject (the first one with the highest count; ties and a
    zero count resolve to a subject chosen by a stable hash of the text) so the simulator never fails.
    """
    counts = []
    tokens = words_of(text)
    for subject in SUBJECTS:
        vocab = set(subject.general_words) | {w for n in subject.niches for w in n.words} | set(words_of(subject.key))
        vocab |= {w for n in subject.niches for w in words_of(n.name)}
        counts.append(sum(1 for t in tokens if t in vocab))
    best = max(counts)
    if best == 0:
        from cascal.simulate.hashing import stable_int

        return SUBJECTS[stable_int("subject-fallback", text) % len(SUBJECTS)]
    return SUBJECTS[counts.index(best)]


def recognise_niche(text: str) -> Optional[tuple[int, int]]:
    """``(subject index, niche index)`` of the niche whose words occur most often in ``text``, or
    ``None`` when no niche word occurs (ties go to the catalogue's first niche)."""
    counts: dict[tuple[int, int], int] = {}
    for token in words_of(text):
        hit = _WORD_TO_NICHE.get(token)
        if hit is not None:
            counts[hit] = counts.get(hit, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    return min(k for k, v in counts.items() if v == best)
