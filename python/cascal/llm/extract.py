"""Extract the chosen option from a model's free-text reply.

The prompt asks for reasoning followed by ``The answer is (X)``. Replies drift from that: they box
the letter, write ``Answer: X``, answer in another language, or just say ``I think (B)``. The
extractor reads what a careful human reader would read, and refuses what such a reader would refuse.

What is read
------------
Only the last :data:`TAIL_CHARS` characters of the reply (where the conclusion is), plus its first
:data:`HEAD_CHARS` characters for replies that open with the letter (``B) because ...``), also when
that tail is blank (a long reply ending in thousands of newlines). The text is NFKC-normalised
(full-width ``（Ｃ）`` becomes ``(C)``), LaTeX and markdown wrappers are removed (``$``, ``**``,
``\\boxed{``, ``\\text{`` ...) and whitespace is squeezed before matching.

Every pattern has bounded quantifiers only, so extraction is linear in the (bounded) text it reads:
a typical reply takes well under a millisecond, and no reply, however long or pathological, more than
a few tens of milliseconds.

Priority
--------
Five rules, strongest first. The first rule with a decisive match decides; within a rule, the
*last* match in the reply decides (a model that corrects itself is read by its final word):

1. **answer statements**: ``the answer is (X)``, ``the correct option is X``, ``I choose X``,
   ``La respuesta es (X)``, ``La réponse est X``, ``Die Antwort ist X``, ``答案是 (X)`` ...;
2. **answer labels**: ``Answer: X``, ``Final answer - (X)``, ``Respuesta: X``, ``答案：X`` ...;
3. **boxes**: ``\\boxed{X}`` anywhere (``\\boxed{\\text{(X)}}`` too);
4. **verdicts**: ``I think (X)``, ``It's X``, ``So option X.``, ``(X) is correct``, ``X is the best
   answer``, ``Je pense que X`` ...;
5. **layout**: a lone letter as the last line (``(X)``, ``X.``, ``Option X``, ``(X) <option text>``),
   or a reply that opens with the letter (``X) because ...``, ``X. <option text>``), unless the reply
   lists several options line by line.

So ``... $\\boxed{B}$ ... So the answer is (C).`` is C (rule 1 beats rule 3), and ``The answer is
(B).`` followed by a stray ``Answer: C`` (often a hallucinated next question) is B.

What is refused
---------------
- a hedge at the deciding match: ``the answer is B or C``, ``either B or C``, ``\\boxed{B, C}``;
- negations and conditions are no answer: ``The answer is not A`` and ``If the answer is A, ...``
  name nothing (``not A but B`` names B, in a verdict too: ``It's not A but B``), nor do dismissed
  lists (``A, B and C are all wrong``);
- verdicts and layout (rules 4-5) on a line that says the model cannot tell (``I cannot determine
  ...``, ``I don't know``, ``not enough information``);
- a lone letter stated with no commitment (``E or F, I'm not sure``);
- the English pronoun is never option I: ``I think the answer is B`` is B, ``I believe so.`` nothing;
  a capital used as a variable is no option either (``A = 5``, ``It is A priori clear``);
- the English article is no option A in verdicts and layout (rules 4-5), nor after another option
  (``So the answer is B, A solid choice.`` is B); ``A`` before a word that never follows the article
  is the option (``A must be correct``, ``A stands out``, ``So it's A for sure``; ``I think A or C``
  is a hedge), but ``A student might say B`` names nothing;
- the template's own placeholder ``(X)`` (a model echoing the instruction) is skipped.

A committed option beyond the question's options (``(K)`` for a 4-option question) makes the reply
unparsable (``-1``): no weaker rule is consulted, because the model did commit to an answer.

Numbered options
----------------
When the prompt numbered the options (``extract_answer(text, n, numbered=True)``), the same rules
read option numbers (``Option 3``, ``The answer is (3)``, ``\\boxed{3}``) instead of letters, and
letters are not read. The prompts built by :mod:`cascal.pipeline.answer` use letters.

Versioning
----------
:data:`EXTRACTOR_VERSION` changes whenever the extractor reads some reply differently. Raw replies
are cached, extracted options are not: a rerun re-reads every cached reply with the current
extractor, without new requests.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from typing import Optional

from cascal.data import LETTERS, MAX_OPTIONS, NO_ANSWER
from cascal.errors import ArgumentTypeError, InvalidParameterError

#: Bumped whenever some reply is read differently (1 was the first extractor, before this rule set; 3
#: reads verdicts ``not A but B``, option A before a verb such as ``A must be correct``, and the head
#: of a reply whose tail is blank).
EXTRACTOR_VERSION = 3

#: How many characters at the end of a reply are read (the conclusion of even a long reasoning).
TAIL_CHARS = 4000
#: How many characters at the start of a reply are read for a reply that opens with its letter.
HEAD_CHARS = 200

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PLACEHOLDER = "X"  # the prompt's "The answer is (X)": never an option (at most 20 options, A..T)
_OUT_OF_RANGE = 10_000  # an index no question has (an option number 0, say)

# --------------------------------------------------------------------------- normalisation
# LaTeX commands opening a group, a few brace-less LaTeX commands, \( \) \[ \], simple HTML emphasis,
# and markdown / LaTeX punctuation. Every quantifier is bounded.
_WRAPPER = re.compile(
    r"\\[A-Za-z]{1,20}[ \t]{0,3}\{"
    r"|\\(?:bf|it|rm|tt|sf|quad|qquad|displaystyle|textstyle|boldsymbol|therefore|implies|Rightarrow"
    r"|rightarrow|Longrightarrow|to|left|right|big|Big)(?![A-Za-z])"
    r"|\\[()\[\]]"
    r"|</?(?:b|strong|em|i|u|code|mark)>"
    r"|[$*`{}#_~]"
)


def normalize(text: str) -> str:
    """NFKC-normalise, strip LaTeX/markdown wrappers, squeeze spaces, drop blank lines.

    Lines are kept (joined by single ``\\n``), with no leading or trailing spaces. Linear time.
    """
    flat = _WRAPPER.sub(" ", unicodedata.normalize("NFKC", text).replace("’", "'"))
    lines = (" ".join(line.split()) for line in flat.splitlines())
    return "\n".join(line for line in lines if line)


# --------------------------------------------------------------------------- the option slot
# What follows a cue: a separator, a few filler words, an optional opening quote, then the option.
_SEP = r"(?:[ \n]?[:\-–—=][ \n]?|[ \n]?,[ \n]?|[ \n])?"
_FILLER = (
    r"(?i:(?:(?:therefore|thus|clearly|definitely|certainly|undoubtedly|obviously|surely|most likely|likely"
    r"|probably|indeed|then|still|simply|actually|that|the|option|choice|letter|answer|number|no\.|nr\.|n°"
    r"|opción|opcion|opção|opzione|optie|variante|la|le|el|die|der|das|l'|(?-i:a)|选项|选)[ \n]?[:,]?[ \n]?){0,3})"
)
_QUOTE = r"[\"'“‘«„]?"
_LETTER = (
    r"(?:\([ ]?(?P<p>[A-Za-z])[ ]?\)"
    r"|\[[ ]?(?P<b>[A-Za-z])[ ]?\]"
    r"|(?<![A-Za-z0-9])(?P<u>[A-Z])(?!['’][A-Za-z])(?![A-Za-z0-9])(?! ?[=+*/^<>≤≥×·])"
    r"|(?<![A-Za-z0-9])(?P<l>[a-z])(?=[.)]?(?:\n|\Z)|[.)] ))"
)
_NUMBER = (
    r"(?:\([ ]?(?P<p>[0-9]{1,3})[ ]?\)"
    r"|\[[ ]?(?P<b>[0-9]{1,3})[ ]?\]"
    r"|(?<![A-Za-z0-9.,])(?P<u>[0-9]{1,3})(?![0-9])(?![.,][0-9]))"
)
# words right after a cue that make it name nothing ("the answer is not A") ...
_NEGATION = re.compile(
    r"(?i:not|isn't|n't|never|neither|none|no|nicht|kein|pas|non)(?![A-Za-z.])[ \n]?,?[ \n]?|不是|不"
)
# ... and words that make it a refusal ("the answer is either B or C", "unclear")
_HEDGE_WORD = re.compile(
    r"(?i:either|between|unclear|uncertain|ambiguous|indeterminate|impossible|unknown|undetermined"
    r"|cannot|can't|o bien|soit|entweder)(?![A-Za-z])"
)
# after an option: another option joined by "or" / "and" / "/" -> a hedge
_JOIN = (
    r"[ ]?,?[ ]?\(?(?:/|&|(?i:or|and|oder|und|ou|et|o|y|e|или|и)(?![A-Za-z])|或者|或|还是|和|与|及|、)[ ]?"
    r"(?i:(?:maybe|possibly|perhaps|probably|option|choice)[ ])?" + _QUOTE
)
# "... are (both) wrong": options listed to dismiss them
_DISMISSED = re.compile(
    r"[ ]?,?[ ]?(?i:are|were|seem|look)(?i: both| all| clearly| obviously)? (?i:wrong|incorrect|false|invalid|ruled out"
    r"|eliminated|not)(?![A-Za-z])"
)
# a sentence about the option after a comma ("B, C is a distractor"), not a second answer
_GOES_ON = re.compile(r" (?i:is|was|are|were|seems|looks|would|could|might|can|may|has|does)(?![A-Za-z])")
# "not A but B"
_BUT = r"[ ]?,?[ ]?(?i:but|rather|instead|sino|mais|sondern|而是|是)[ ]?(?i:(?:rather|option|choice)[ ])?" + _QUOTE

# a line saying the model cannot tell: verdicts and layout (rules 4-5) on such a line are ignored
_CANNOT_TELL = re.compile(
    r"(?i:cannot|can't|can not|unable to|impossible to|no way to) (?:be )?(?:determine|determined|tell|decide"
    r"|answer|say|know|choose)"
    r"|(?i:don't|do not) know|(?i:not|insufficient) enough information|(?i:insufficient) information"
    r"|(?i:no|none of the) (?:correct )?(?:answer|option|choice)s? (?:is|are) correct"
)


class _Slot:
    """Compiled readers of the option after a cue, for letters or for numbers."""

    def __init__(self, option: str) -> None:
        self.option = re.compile(_SEP + _FILLER + _QUOTE + option)
        self.bare = re.compile(_QUOTE + option)  # an option right here, no separator
        self.join = re.compile(_JOIN + option)
        self.but = re.compile(_BUT + option)
        self.listed = re.compile(r",[ ]?" + _QUOTE + option)


_SLOTS = {False: _Slot(_LETTER), True: _Slot(_NUMBER)}

# the outcome of reading one match: an option index (>= 0), a refusal, or nothing (look further)
_REFUSE = -1
Read = Optional[int]


def _index(match: "re.Match[str]", numbered: bool) -> Optional[int]:
    """The option index a slot match names (0-based; ``_OUT_OF_RANGE`` for option number 0), or
    ``None`` for the template placeholder ``X``."""
    value = match.group("p") or match.group("b") or match.group("u") or match.groupdict().get("l")
    assert value is not None
    if numbered:
        number = int(value)
        return number - 1 if number >= 1 else _OUT_OF_RANGE
    if match.group("u") == _PLACEHOLDER or (match.group("p") or match.group("b")) == _PLACEHOLDER:
        return None
    return _ALPHABET.index(value.upper())


_PRONOUN_I = re.compile(r" [a-z]|['’]")
_NEXT_WORD = re.compile(r" [a-z]")
# words that follow an option but never the article "a": verbs and modals of a sentence about the
# option ("A must be correct", "A stands out", "A best matches"), reasons ("A for sure", "A since"),
# "A then", "A here", "A it is", and the words joining a second option ("A or C"); a hyphen makes the
# word part of a compound noun after the article ("A must-have", "A for-profit firm")
_OPTION_WORD = re.compile(
    r" (?:is|was|has|does|seems|appears|looks|stands|fits|matches|would|could|should|must|might|may"
    r"|(?:best|most closely) (?:matches|fits|describes|explains|answers)"
    r"|because|since|as|for|then|here|it|or|and|nor|oder|und|ou|et|o|y|e|es|est|ist)(?![A-Za-z-])"
)


def _is_word(text: str, match: "re.Match[str]", weak: bool) -> bool:
    """A bare capital that is an English word, not an option: the pronoun ``I`` (``I think``,
    ``I'm``) always; the article ``A`` (``A good ...``) in the weak rules, when a lowercase word
    follows that cannot follow an option letter (``A must be correct`` is option A)."""
    letter = match.group("u")
    if letter not in ("I", "A"):
        return False
    if letter == "I":
        return bool(_PRONOUN_I.match(text, match.end()))
    if not weak:
        return False
    return bool(_NEXT_WORD.match(text, match.end())) and not _OPTION_WORD.match(text, match.end())


def _read_option(text: str, pos: int, numbered: bool, *, weak: bool, separated: bool = True) -> Read:
    """Read the option right after a cue ending at ``pos``: its index, ``_REFUSE`` (a hedge), or
    ``None`` (the cue names no option). Looks at a bounded number of characters."""
    return _read_option_at(text, pos, numbered, weak=weak, separated=separated)[0]


def _read_option_at(text: str, pos: int, numbered: bool, *, weak: bool, separated: bool = True) -> "tuple[Read, int]":
    """:func:`_read_option`, and where the option it read ends (``B`` in ``not A but B``); ``pos``
    when it read none."""
    slot = _SLOTS[numbered]
    if _HEDGE_WORD.match(text, _skip_sep(text, pos)):
        return _REFUSE, pos
    negation = _NEGATION.match(text, _skip_sep(text, pos))
    if negation:
        # "not A but B" names B; any other negation names nothing
        first = slot.bare.match(text, negation.end())
        if first:
            but = slot.but.match(text, first.end())
            if but and not _is_word(text, but, weak):
                return _finish(text, but, numbered, weak), but.end()
        return None, pos
    match = (slot.option if separated else slot.bare).match(text, pos)
    if match is None or _is_word(text, match, weak):
        return None, pos
    return _finish(text, match, numbered, weak), match.end()


def _finish(text: str, match: "re.Match[str]", numbered: bool, weak: bool) -> Read:
    """The index of a slot match, or ``_REFUSE`` when another option is joined to it (``B or C``;
    in the strong rules also ``B, C``); ``None`` when the options joined are dismissed (``A and B
    are both wrong``)."""
    index = _index(match, numbered)
    if index is None:
        return None
    other = _SLOTS[numbered].join.match(text, match.end())
    if other and not _is_word(text, other, True):
        return None if _DISMISSED.match(text, other.end()) else _REFUSE
    if not weak:
        listed = _SLOTS[numbered].listed.match(text, match.end())
        if listed and not _is_word(text, listed, True) and not _GOES_ON.match(text, listed.end()):
            return _REFUSE
    return index


def _skip_sep(text: str, pos: int) -> int:
    """``pos`` past a short separator (space, colon, dash, comma), at most a few characters."""
    end = min(len(text), pos + 4)
    while pos < end and text[pos] in " \n:-–—=,":
        pos += 1
    return pos


def _last_decisive(reads: "list[tuple[int, Read]]") -> Read:
    """The last decisive read by position (an index or a refusal); ``None`` when none is."""
    for _, read in sorted(reads, key=lambda r: r[0], reverse=True):
        if read is not None:
            return read
    return None


# --------------------------------------------------------------------------- rule 1: statements
_STATEMENT = re.compile(
    # English
    r"(?i:\banswer(?: to (?:this|the) (?:question|problem))?(?: here| choice| option| letter)?"
    r"(?:'s| is| would be| will be| should be| must be| has to be| seems to be| appears to be| then is| =))"
    r"|(?i:\b(?:correct|right|best|proper|true|final|only|only remaining|remaining"
    r"|most (?:appropriate|likely|accurate|plausible|reasonable))"
    r" (?:option|choice|letter|response|selection|one|alternative)(?: here)? (?:is|would be|must be|should be))"
    r"|(?i:\bmy (?:final )?(?:choice|pick|selection|guess) (?:is|would be))"
    r"|\bI(?: (?i:choose|chose|select|selected|pick|picked|opt for|go with)|(?i:'ll|'d| will| would)"
    r" (?i:go with|choose|pick|select))(?![A-Za-z])"
    # Spanish, Portuguese, Italian, French, German, Dutch
    r"|(?i:\brespuesta (?:correcta |final |adecuada )?(?:es|sería|seria)\b)"
    r"|(?i:\bopción (?:correcta |adecuada )?es\b)|(?i:\b(?:elijo|escojo|selecciono)\b)"
    r"|(?i:\bresposta (?:correta |certa |final )?(?:é|seria)(?![A-Za-z]))|(?i:\bopção correta é(?![A-Za-z]))"
    r"|(?i:\b(?:eu )?escolho\b)"
    r"|(?i:\brisposta (?:corretta |giusta |esatta |finale )?(?:è|e'|sarebbe)(?![A-Za-z]))|(?i:\bscelgo\b)"
    r"|(?i:\bréponse (?:correcte |finale |juste |exacte )?(?:est|serait)\b)|(?i:\bje choisis\b)"
    r"|(?i:\bAntwort (?:ist|lautet|wäre)\b)|(?i:\bich wähle\b)"
    r"|(?i:\bantwoord is\b)"
    # Russian, Chinese, Japanese, Korean
    r"|(?i:\bответ(?: —| –| -| это)(?![A-Za-zА-Яа-я]))"
    r"|答案(?:是|为|為|应该是|应是|應該是|应为)|正确(?:答案|选项|的选项)(?:是|为)"
    r"|(?:故|所以|因此|应|應|我)选(?:择)?(?!项)"
    r"|(?:答え|正解|解答)(?:は)|(?:정답|답)(?:은|는)"
)


# a statement made under a condition is no commitment: "If the answer is A, then ...", "Suppose ..."
_CONDITION = re.compile(
    r"(?<![A-Za-z])(?i:if|suppose|supposing|assume|assuming|whether|unless|when|what if)"
    r"(?i: the| my| our| your| that| this)?(?i: correct| final| right)? ?$"
)


def _statements(text: str, numbered: bool) -> Read:
    reads = [
        (m.start(), _read_option(text, m.end(), numbered, weak=False))
        for m in _STATEMENT.finditer(text)
        if not _CONDITION.search(text, max(0, m.start() - 30), m.start())
    ]
    return _last_decisive(reads)


# --------------------------------------------------------------------------- rule 2: labels
_LABEL = re.compile(
    r"(?i:\b(?:answer|respuesta|réponse|antwort|resposta|risposta|antwoord|ответ|answer choice"
    r"|correct option|correct choice|final choice|choice|my guess|my choice|final|correct)(?: \(final\))?[ ]?"
    r"[:\-–—=](?![:\-–—=]))"
    r"|(?:答案|答え|正解|정답|解答)[ ]?:"
)


def _labels(text: str, numbered: bool) -> Read:
    reads = [(m.start(), _read_option(text, m.end(), numbered, weak=False)) for m in _LABEL.finditer(text)]
    return _last_decisive(reads)


# --------------------------------------------------------------------------- rule 3: boxes
_BOX = re.compile(r"\\(?:boxed|fbox|framebox)[ \t]{0,3}\{")
_BOX_CHARS = 120


def _box_content(raw: str, start: int) -> str:
    """The content of the box whose ``{`` ends at ``start`` (at most ``_BOX_CHARS`` characters)."""
    depth = 1
    end = min(len(raw), start + _BOX_CHARS)
    for i in range(start, end):
        if raw[i] == "{":
            depth += 1
        elif raw[i] == "}":
            depth -= 1
            if depth == 0:
                return raw[start:i]
    return raw[start:end]


def _boxes(raw: str, numbered: bool) -> Read:
    reads: list[tuple[int, Read]] = []
    for m in _BOX.finditer(raw):
        content = normalize(_box_content(raw, m.end()))
        reads.append((m.start(), _read_option(content, 0, numbered, weak=False, separated=False)))
    return _last_decisive(reads)


# --------------------------------------------------------------------------- rule 4: verdicts
_VERDICT = re.compile(
    r"\bI (?i:think|believe|guess|suppose|suspect|reckon|feel)(?i: that)?"
    r"(?i: it(?:'s| is| would be| should be| must be| has to be))?"
    r"|\bI(?i:'d| would) (?i:say|answer|go for|guess|pick|lean towards|lean toward)"
    r"|\bI(?i:'m| am) (?i:going with|going for|picking|choosing|selecting|leaning towards|leaning toward)"
    r"|(?i:\b(?:it|this)(?:'s| is| must be| should be| would be| has to be| seems to be| appears to be))"
    r"|(?i:\b(?:so|thus|therefore|hence|consequently|overall|finally|in conclusion|in summary)(?:,)?"
    r"(?: (?:it's|it is|we (?:get|have|choose|pick|select)))?)"
    r"|(?i:\b(?:we're|we are|I'm|I am) left with|\bthe (?:best|correct one|right one|best one) is)"
    r"|(?i:\b(?:probably|most likely|likely|presumably|go with|going with|leaves|leaves us with|leaving"
    r"|leaving us with))"
    r"|(?i:\b(?:creo que|pienso que|je pense que|je crois que|ich denke|ich glaube|penso che|acho que))"
    r"|我(?:认为|覺得|觉得|認為)(?:是|应该是)?"
)
# "option (E)." / "... corresponds to option C": an option named at the end of a sentence
_OPTION_CUE = re.compile(r"(?i:\b(?:option|choice|opción|opção|opzione)(?= ?[(\[0-9A-Za-z\"'“]))")
# "(B) is correct", "B is the best answer", "option C is right", "C是正确的"
_VERDICT_AFTER = re.compile(
    r" (?i:is|seems|appears|would be|must be|should be|looks)(?i: to be)? (?i:the )?"
    r"(?i:correct|right|best|true|valid|most (?:likely|appropriate|accurate|plausible|reasonable|correct))"
    r"(?![A-Za-z])"
    r"|(?i: is the (?:answer|one|winner)| stands out| is best| fits best| (?:best|most closely) (?:matches|fits"
    r"|describes|explains|answers))(?![A-Za-z])"
    r"|(?i: es (?:la )?(?:correcta|respuesta correcta)| est (?:la )?(?:bonne|correcte)| ist (?:richtig|korrekt))"
    r"|(?:是|为)?正确(?:的|答案)?"
)
_LETTER_FIRST = {
    numbered: re.compile(r"(?i:(?:option|choice)[ ]?)?" + _QUOTE + option)
    for numbered, option in ((False, _LETTER), (True, _NUMBER))
}
# what may follow a verdict's option: the end of the sentence, a reason, or praise; not "is wrong"
_VERDICT_END = re.compile(
    r"[\"'”»]?[ ]?(?:[.!,;)\n]|\Z|(?i:because|since|as|for|is (?:the )?(?:correct|right|best|answer|true)"
    r"|(?:seems|appears|looks) (?:to be )?(?:the )?(?:correct|right|best)|fits|matches|it is|here|then)(?![A-Za-z]))"
)
_OPTION_END = re.compile(r"[\"'”»]?[ ]?(?:[.!](?: |\n|\Z)|\n|\Z)")
# words just before a verdict cue that make it no commitment: "if it's B", "not so B"
_VERDICT_VETO = re.compile(
    r"(?<![A-Za-z])(?i:not|n't|if|whether|unless|suppose|assume|assuming|when|what if)(?i: that)?[ ,]{0,2}$"
)
# words just before a named option that turn it around: "we can eliminate option A", "rather than
# B", "the wrong option is C", "A or B is correct"
_OPTION_VETO = re.compile(
    r"(?<![A-Za-z])(?i:not|n't|eliminate|eliminates|eliminated|rule out|ruled out|rules out|exclude|excluded|except"
    r"|than|instead of|unlike|besides|without|wrong|incorrect|false|discard|discarded|reject|rejected|against"
    r"|compare|compared|consider|considering|check|checking|look at|evaluate|evaluating|analy[sz]e|analy[sz]ing"
    r"|examine|examining|for|if|whether|about|between|either|or)[ ,:]{0,3}(?:the |this |that )?(?:option |choice )?$"
)


class _Lines:
    """Which lines of a text say the model cannot tell, found in one pass (linear time)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.cannot = {self.line_of(m.start()) for m in _CANNOT_TELL.finditer(text)}

    def line_of(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos) - 1

    def cannot_tell(self, pos: int) -> bool:
        """Whether the line holding ``pos`` says the model cannot tell."""
        return self.line_of(pos) in self.cannot


def _vetoed(lines: _Lines, pos: int, veto: "re.Pattern[str]") -> bool:
    """Whether a verdict starting at ``pos`` is turned around by the words before it (``veto``), or
    sits on a line saying the model cannot tell."""
    return bool(veto.search(lines.text, max(0, pos - 40), pos)) or lines.cannot_tell(pos)


def _verdicts(text: str, numbered: bool) -> Read:
    lines = _Lines(text)
    reads: list[tuple[int, Read]] = []
    for cue, end, veto in ((_VERDICT, _VERDICT_END, _VERDICT_VETO), (_OPTION_CUE, _OPTION_END, _OPTION_VETO)):
        for m in cue.finditer(text):
            if _vetoed(lines, m.start(), veto):
                continue
            # the option read ends at option_end: after "It's B" or after "It's not A but B"
            read, option_end = _read_option_at(text, m.end(), numbered, weak=True)
            if read is not None and read != _REFUSE:
                if not end.match(text, option_end) or _listing(text, option_end, numbered):
                    read = None
                elif cue is _OPTION_CUE and _opens_listed_line(text, m.start(), option_end):
                    read = None
            reads.append((m.start(), read))
    for m in _LETTER_FIRST[numbered].finditer(text):
        if _VERDICT_AFTER.match(text, m.end()) and not _is_word(text, m, True):
            if not _vetoed(lines, m.start(), _OPTION_VETO):
                reads.append((m.start(), _index(m, numbered)))
    return _last_decisive(reads)


def _listing(text: str, pos: int, numbered: bool) -> bool:
    """Whether another option follows the one ending at ``pos`` after a comma (``A, B and C ...``)."""
    other = _SLOTS[numbered].listed.match(text, pos)
    return other is not None and not _is_word(text, other, True)


def _opens_listed_line(text: str, start: int, end: int) -> bool:
    """Whether ``Option X`` opens its line and the line goes on (``Option A. Paris``: a list entry)."""
    at_line_start = start == 0 or text[start - 1] == "\n"
    rest = text[end : end + 3].lstrip(".:!)")
    return at_line_start and bool(rest) and not rest.startswith("\n")


# --------------------------------------------------------------------------- rule 5: layout
# a line that is only the option (optionally "Option"/"Answer" before it, punctuation after)
_LONE = {
    numbered: re.compile(
        r"(?i:(?:final |my )?(?:answer|option|choice|so|thus|therefore|hence)[ ]?[:,\-]?[ ]?)?"
        + _QUOTE
        + option
        + r"[\"'”’»]?[ ]?[.!)]?\Z"
    )
    for numbered, option in ((False, _LETTER), (True, _NUMBER))
}
# a line that opens with an option marker: "(B) ...", "B) ...", "B. ...", "B: ...", "B - ..."
_MARKER_LETTER = r"(?:\((?P<p>[A-Za-z])\)|(?P<u>[A-Z])\)|(?P<b>[A-Z])(?:\.|:| -| –| —|,)(?= |\Z))"
_MARKER_NUMBER = r"(?:\((?P<p>[0-9]{1,3})\)|(?P<u>[0-9]{1,3})\)|(?P<b>[0-9]{1,3})(?:\.|:| -| –| —|,)(?= |\Z))"
_MARKER = {False: re.compile(_MARKER_LETTER), True: re.compile(_MARKER_NUMBER)}


def _listed_options(lines: "list[str]", numbered: bool) -> bool:
    """Whether two lines open with markers of different options (the reply goes through a list)."""
    seen: set[Optional[int]] = set()
    for line in lines:
        m = _MARKER[numbered].match(line)
        if m:
            seen.add(_index(m, numbered))
            if len(seen) > 1:
                return True
    return False


def _layout(text: str, head: str, numbered: bool) -> Read:
    lines = text.split("\n")
    first_lines = head.split("\n")
    listed = _listed_options(first_lines + lines, numbered)
    last = lines[-1]
    if not _CANNOT_TELL.search(last):
        lone = _LONE[numbered].match(last)
        if lone and not _is_word(last, lone, True):
            return _finish(last, lone, numbered, True)
    for line in (last, first_lines[0]):
        if listed or _CANNOT_TELL.search(line):
            continue
        marker = _MARKER[numbered].match(line)
        if marker:
            read = _finish(line, marker, numbered, True)
            if read is not None:
                return read
    return None


# --------------------------------------------------------------------------- the extractor
def find_choice(text: str, numbered: bool = False) -> Optional[int]:
    """The 0-based option the reply commits to (A or 1 is 0), not checked against any option count
    (letters U..Z give 20..25), or ``None`` when it names none or hedges.

    Raises:
        cascal.errors.ArgumentTypeError: ``text`` is not a string (a ``TypeError``).
    """
    if not isinstance(text, str):
        raise ArgumentTypeError(f"text: expected str, got {type(text).__name__}")
    numbered = bool(numbered)
    # NFKC may lengthen text (one character can become 18): bound the tail again after it
    raw = unicodedata.normalize("NFKC", text[-TAIL_CHARS:])[-TAIL_CHARS:]
    flat = normalize(raw)
    head = flat if len(text) <= TAIL_CHARS else normalize(text[:HEAD_CHARS])
    for read in (
        lambda: _statements(flat, numbered),
        lambda: _labels(flat, numbered),
        lambda: _boxes(raw, numbered),
        lambda: _verdicts(flat, numbered),
        lambda: _layout(flat, head, numbered),
    ):
        found = read()
        if found is not None:
            return None if found == _REFUSE else found
    return None


def find_letter(text: str) -> Optional[str]:
    """The answer letter the reply commits to (upper case, A..Z), or ``None`` when it names none.

    Raises:
        cascal.errors.ArgumentTypeError: ``text`` is not a string (a ``TypeError``).
    """
    index = find_choice(text)
    return None if index is None else _ALPHABET[index]


def extract_answer(text: str, n_options: int, numbered: bool = False) -> int:
    """The option index (0 = A, or option 1 when ``numbered``) the reply chose, or ``NO_ANSWER`` (-1)
    when none is found, the reply hedges, or the option is beyond the question's ``n_options``.

    Args:
        text: the model's reply.
        n_options: how many options the question has (2..20).
        numbered: the prompt numbered the options (1, 2, 3 ...) instead of lettering them.

    Raises:
        cascal.errors.InvalidParameterError: ``n_options`` outside 2..20 (a ``ValueError``).
        cascal.errors.ArgumentTypeError: ``text`` is not a string (a ``TypeError``).
    """
    if isinstance(n_options, bool) or not isinstance(n_options, int) or not 2 <= n_options <= MAX_OPTIONS:
        raise InvalidParameterError(f"n_options: expected an integer in 2..{MAX_OPTIONS}, got {n_options!r}")
    index = find_choice(text, numbered)
    if index is None or index >= n_options:
        return NO_ANSWER
    return index


assert len(LETTERS) == MAX_OPTIONS and _ALPHABET.startswith(LETTERS) and _PLACEHOLDER not in LETTERS

__all__ = ["EXTRACTOR_VERSION", "HEAD_CHARS", "TAIL_CHARS", "extract_answer", "find_choice", "find_letter", "normalize"]
