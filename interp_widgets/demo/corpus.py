"""Synthetic English-like corpus that the demo model is trained on.

Every document has one topic (`TOPICS`) and is generated from this grammar::

    document   := opening  sentence{3..8}
    opening    := a topic, ioi or article sentence, drawn with the weights below
    sentence   := topic_sent  (weight 0.45)
                | ioi_sent    (weight 0.25)  two new names, one repeated: the other ends it
                | article_sent(weight 0.15)  "the X" first, later "a X" / "an X"
                | repeat      (weight 0.15)  an earlier sentence, or the last 2-3, verbatim
    topic_sent := [OPENER ","] TOPIC_TEMPLATE   slots filled from the topic's lexicon; half of
                                          its "a(n) [adj] {thing}" slots name the document's
                                          last thing again, as "a(n) {thing}"
    ioi_sent   := IOI_TEMPLATES[k]       e.g. "When {A} and {B} went to the {place}, {S} gave
                                          the {thing} to {IO}."  with {A, B} = {IO, S}
                | "OPEN{A} and {B} MET the {place}THEN {S} GAVE {IO}."  (half: parts in IOI_OPEN,
                                          IOI_MET, IOI_THEN, IOI_GAVE)
    article_sent := ARTICLE_TEMPLATES[k] e.g. "Everyone wanted the {thing}. In the end, {N} got
                                          {art} {thing}."
                  | "{N} SEEN the {thing}THEN {N or M} [ADV] GOT {art} {thing}."   (half: parts
                                          in ARTICLE_SEEN, ARTICLE_THEN, ARTICLE_ADV and
                                          ARTICLE_GOT, a quarter of whose picks are the topic's
                                          own verbs)

The weights are `DEFAULT_MIX`; `corpus(n, mix=TASK_MIX)` draws documents dense in indirect-object
and article sentences (with a larger cast, since each takes two fresh names).

A topic's lexicon (`LEXICON[topic]`) has roles, things, places, adjectives and past-tense verbs;
shared words (openers, adverbs, general adjectives, numbers) widen the vocabulary so that a
byte-level BPE reaches a few thousand tokens. Each document draws a cast of names from `NAMES`
(64 names, each a single token after a space); IOI and article sentences take names the document
has not used yet, and a cast never holds both names of a pair in `HELDOUT_PAIRS`. A document that
would open with a name gets an opener first ("On Monday, ..."), so names always follow a space.
Documents open with every kind of sentence but a repeat: a model with learned positions then
sees indirect-object and article sentences at the start of its context too, where the held-out
prompts put them (opening with topic sentences only, a model that solved IOI after a first
sentence preferred the subject when the IOI sentence came first).

Held out from the corpus, for evaluation (see `tasks.py`): the templates `HELDOUT_IOI_TEMPLATES`
and `HELDOUT_ARTICLE_TEMPLATES` (their openers and slots appear in training, the sentence frames
never do) and the name pairs `HELDOUT_PAIRS`, which never share a document.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from itertools import combinations

NAMES = tuple(
    "Mary John Alice Bob Tom Anna James Emma David Sarah Paul Laura Mark Lucy Peter Kate Mike "
    "Jane Chris Rose Sam Amy Dan Lisa Jack Ella Ben Nina Leo Sophie Max Julia Adam Clara Eric "
    "Grace Frank Helen George Irene Henry Olivia Oscar Ruth Victor Diana Hugo Maria Ivan Eva "
    "Carl Linda Tim Susan Alex Nora Ryan Zoe Luke Tina Simon Vera Ian Fiona".split()
)


@dataclass(frozen=True)
class Lexicon:
    """One topic's words: people, objects (both articles), places, adjectives, past-tense verbs."""

    roles: tuple[str, ...]
    things: tuple[str, ...]
    places: tuple[str, ...]
    adjs: tuple[str, ...]
    verbs: tuple[str, ...]


def _lex(roles: str, things: str, places: str, adjs: str, verbs: str) -> Lexicon:
    return Lexicon(*(tuple(s.split()) for s in (roles, things, places, adjs, verbs)))


LEXICON: dict[str, Lexicon] = {
    "cooking": _lex(
        "chef cook baker waiter butcher grocer host guest owner apprentice critic caterer",
        "apple onion egg oven avocado apricot olive omelette orange eggplant almond artichoke "
        "oyster apron bowl knife spoon pan pot carrot tomato potato lemon cake pie bread loaf "
        "cheese butter sauce soup salad plate fork kettle pepper cucumber melon peach cherry "
        "muffin cookie sandwich noodle recipe skillet ladle whisk dumpling pancake biscuit radish "
        "garlic mushroom",
        "kitchen bakery restaurant market pantry cafe diner cellar canteen farmhouse",
        "fresh ripe sweet sour salty spicy bitter crispy tender juicy delicious hot burnt raw "
        "tasty creamy golden smoky savory",
        "cooked baked sliced chopped peeled fried boiled roasted tasted stirred served grilled "
        "washed mixed seasoned melted mashed toasted",
    ),
    "space": _lex(
        "astronaut pilot engineer scientist commander astronomer navigator technician "
        "cosmonaut explorer",
        "asteroid eclipse engine antenna alien airlock instrument exoplanet outpost orbiter "
        "astrolabe emblem rocket planet comet star moon satellite telescope galaxy nebula meteor "
        "capsule shuttle probe spacesuit helmet launchpad module thruster radar beacon crater "
        "signal visor sensor lander rover booster",
        "station observatory hangar cockpit laboratory base spaceport bunker dome tower",
        "distant bright dark frozen silent massive cosmic lunar solar orbital glowing strange "
        "faint remote",
        "launched observed tracked repaired landed scanned detected orbited photographed "
        "studied docked inspected guided mapped assembled spotted",
    ),
    "sport": _lex(
        "player coach referee umpire athlete captain goalkeeper runner trainer striker champion "
        "swimmer",
        "award injury elbow armband oar ace exercise event inning assist attempt ankle obstacle "
        "ball bat racket goal net whistle trophy medal glove jersey shoe team match game race "
        "score point penalty sprint relay tournament league season lap kick bench cup skate "
        "paddle hurdle dumbbell towel banner",
        "stadium gym field court track pool arena rink pitch clubhouse",
        "fast quick strong tired skilled fair tough winning losing brave nervous proud fit agile "
        "loud final",
        "kicked threw caught won lost scored trained passed hit blocked tackled coached raced "
        "defended cheered missed dribbled celebrated",
    ),
    "music": _lex(
        "singer pianist drummer violinist conductor composer guitarist artist organist musician "
        "producer dancer",
        "album anthem encore organ oboe accordion aria octave opera amplifier echo overture "
        "ensemble interlude piano guitar violin drum flute trumpet song melody chord note tune "
        "record concert ballad harp cello banjo microphone speaker rhythm lyric chorus verse "
        "symphony ticket cassette radio headphone metronome tambourine saxophone clarinet "
        "harmonica",
        "studio theater hall stage club church conservatory festival bar auditorium",
        "quiet soft beautiful catchy slow lively gentle famous classical modern musical sad happy "
        "noisy elegant original perfect smooth",
        "played sang composed recorded tuned performed wrote practiced heard hummed strummed "
        "conducted rehearsed whistled released arranged learned enjoyed",
    ),
    "weather": _lex(
        "forecaster meteorologist reporter hiker ranger shepherd traveler observer climber skier",
        "umbrella avalanche icicle iceberg overcoat anemometer aurora oasis igloo earthquake "
        "storm cloud rain snow wind thunder lightning rainbow fog mist hail breeze drought flood "
        "tornado hurricane blizzard puddle raincoat thermometer barometer forecast sunset sunrise "
        "frost gust shower drizzle heatwave scarf boot jacket kite weathervane",
        "valley mountain coast plain hill village desert meadow ridge town",
        "rainy sunny cloudy windy stormy foggy humid dry chilly freezing icy wet gray mild calm "
        "clear cool severe",
        "predicted watched felt noticed warned reported measured expected feared ignored "
        "survived described carried opened shook covered followed",
    ),
    "law": _lex(
        "judge lawyer attorney clerk witness juror officer detective defendant prosecutor suspect "
        "bailiff inspector advocate",
        "appeal argument alibi affidavit oath objection inquiry indictment envelope exhibit "
        "agreement amendment estate case trial verdict contract statute warrant fine sentence "
        "document file letter report ruling motion claim charge law rule permit license gavel "
        "badge bond deed will lawsuit subpoena summons testimony policy complaint confession",
        "courthouse courtroom prison office chamber library jail tribunal parliament registry",
        "legal guilty innocent formal official strict unfair serious secret urgent public private "
        "careful lengthy complex binding valid illegal",
        "signed filed argued reviewed approved rejected questioned accused sentenced charged "
        "judged witnessed examined drafted sealed appealed dismissed published",
    ),
    "garden": _lex(
        "gardener florist botanist beekeeper neighbor landscaper groundskeeper farmer orchardist",
        "acorn orchid oak ivy iris aster azalea earthworm insect ant elm ash rose tulip daisy lily "
        "seed bulb shovel rake hoe hose fence hedge bush tree leaf root branch vine weed fern moss "
        "mulch compost wheelbarrow sprinkler trowel sunflower daffodil lavender petal thorn bee "
        "butterfly caterpillar snail ladder",
        "garden greenhouse yard orchard nursery allotment backyard park shed meadow",
        "green leafy blooming wild fragrant tall tiny thorny muddy shady colorful pale lush "
        "overgrown healthy wilted purple",
        "planted watered pruned trimmed dug picked grew harvested weeded raked fertilized "
        "repotted transplanted gathered sowed protected admired collected",
    ),
    "ocean": _lex(
        "sailor diver fisherman surfer lifeguard pirate biologist deckhand harbormaster "
        "oceanographer admiral",
        "anchor octopus eel island albatross urchin anemone otter orca estuary atoll boat ship "
        "wave shell fish whale dolphin shark crab lobster seagull sail mast rope buoy reef tide "
        "current coral pearl starfish seal turtle canoe kayak yacht compass map jellyfish seaweed "
        "pebble wreck treasure bucket",
        "harbor beach dock lighthouse port bay cove pier shore marina",
        "deep blue rough sandy rocky shallow vast misty tropical sunken coastal marine wide "
        "endless hidden",
        "sailed rowed steered anchored hooked netted chased rescued explored towed tied painted "
        "cleaned loaded searched found pulled",
    ),
}
TOPICS: tuple[str, ...] = tuple(LEXICON)

OPENERS = (
    "In the morning", "In the evening", "At noon", "After lunch", "Before dinner", "Later that day",
    "Once again", "As usual", "All week", "While it was raining", "On Monday", "On Tuesday",
    "On Wednesday", "On Thursday", "On Friday", "On Saturday", "On Sunday", "In January",
    "In February", "In March", "In April", "In May", "In June", "In July", "In August",
    "In September", "In October", "In November", "In December", "Last year", "Every summer",
    "Every winter", "That spring", "That autumn", "Years ago", "Soon after", "At midnight",
    "By the end of the month", "For the first time", "Without any warning",
    "To everyone's surprise",
)
ADVERBS = tuple(
    "quickly slowly carefully quietly happily gently suddenly finally proudly eagerly nervously "
    "loudly calmly patiently easily barely openly secretly warmly badly politely boldly "
    "briefly cheerfully clumsily".split()
)
GENERAL_ADJS = tuple(
    "old new large small big little good long short odd unusual excellent ordinary important "
    "expensive interesting enormous ugly awful amazing ideal early ancient empty simple "
    "heavy cheap clean broken rare shiny rusty wooden plain fancy modest".split()
)
NUMBER_WORDS = tuple("two three four five six seven eight nine ten eleven twelve twenty".split())

TOPIC_TEMPLATES = (
    "the {role} {verb} the {adj} {thing} in the {place}.",
    "{name} {verb} {a_adj_thing} near the {place}.",
    "{name} {verb} the {thing} {adv}.",
    "there was {a_adj_thing} in the {place}.",
    "the {thing} was {adj} and {adj2}.",
    "everyone in the {place} talked about the {adj} {thing}.",
    "{name} said that the {thing} in the {place} was {adj}.",
    "the {role} and the {role2} {verb} {a_thing} together.",
    "nobody knew why the {thing} was so {adj}.",
    "{a_adj_role} {verb} the {thing} and {a_thing2}.",
    "the {role} {adv} {verb} the {thing} with {a_thing2}.",
    "{name} and the {role} {verb} {num} {things} at the {place}.",
    "the {place} had {a_adj_thing}, {a_thing2} and {num} {things}.",
    "in {year}, {a_role} from the {place} {verb} {a_adj_thing}.",
    "{name} asked the {role} about {a_adj_thing}.",
    "it was {a_adj_thing}, so the {role} {verb} it {adv}.",
    "according to {name}, the {role} {verb} the {thing} at {hour} o'clock.",
    # everyday words of the held-out frames (never the frames): a model cannot be asked to
    # generalise over words it has never seen
    "the {role} was sitting in the {place} all day.",
    "{name} reached the {place} before the {role}.",
    "the {role} left the {thing} in the {place}.",
    "{name} walked into the {place} {adv}.",
    "this was the {place} where the {role} {verb} {a_thing}.",
    "the {role} could not find the {thing} anywhere.",
    "nobody could stop the {role} from talking about the {thing}.",
    "{name} was thinking about the {adj} {thing}.",
    "the {role} went out to the {place} with {a_thing}.",
    "the {role} was staring at the {adj} {place}.",
    "{name} wanted to buy the {thing} at last.",
    "the {role} {verb} the {thing} twice.",
    "{name} tried to get {a_adj_thing} from the {place}.",
)
IOI_TEMPLATES = (
    "When {A} and {B} went to the {place}, {S} gave the {thing} to {IO}.",
    "After {A} and {B} arrived at the {place}, {S} handed the {thing} to {IO}.",
    "Then {A} and {B} had a long talk about the {thing}. Afterwards, {S} said goodbye to {IO}.",
    "{A} and {B} were working at the {place}. {S} decided to give the {thing} to {IO}.",
    "Yesterday {A} and {B} met at the {place}, and {S} showed the {thing} to {IO}.",
    "When {A} and {B} got to the {place}, {S} gave {IO} {a_thing}.",
    "At the {place}, {A} and {B} found the {thing}. {S} sent it to {IO}.",
    "Since {A} and {B} were at the {place}, {S} wrote a letter to {IO}.",
    "{A} and {B} cleaned the {place} together, and then {S} brought the {thing} to {IO}.",
)
#: parts of the indirect-object sentences built besides `IOI_TEMPLATES` (half of them):
#: "<OPEN>{A} and {B} <MET> the {place}<THEN> {S} <GAVE> {IO}." -- thousands of frames, so that a
#: model learns the rule (the name that was not repeated), not the frames
IOI_OPEN = ("When ", "After ", "Because ", "Just as ", "Before ", "")
IOI_MET = ("went to", "met at", "arrived at", "got to", "were working at", "cleaned", "visited",
           "were waiting in", "stopped at", "looked around")
IOI_THEN = (",", ", and then", ". Then", ". Later,", ", so", ". After a while,")
IOI_GAVE = ("gave the {thing} to", "handed the {thing} to", "sent the {thing} to",
            "showed the {thing} to", "brought the {thing} to", "lent the {thing} to",
            "said goodbye to", "wrote a letter to", "gave {a_thing} to", "smiled at",
            "talked to", "waved to")
HELDOUT_IOI_TEMPLATES = (
    "While {A} and {B} were sitting in the {place}, {S} passed the {thing} to",
    "As soon as {A} and {B} reached the {place}, {S} offered the {thing} to",
    "Once {A} and {B} left the {place}, {S} threw the {thing} to",
    "Later that day {A} and {B} walked into the {place}, where {S} sold the {thing} to",
)
ARTICLE_TEMPLATES = (
    "{N} looked at the {thing} for a long time, and then {N} bought {art} {thing}.",
    "The {role} talked about the {thing} all day, so {N} made {art} {thing} for the {role}.",
    "{N} had never seen the {thing} before. It was {art} {thing} from the {place}.",
    "{N} lost the {thing} in the {place}, so {M} gave {N} {art} {thing}.",
    "Everyone wanted the {thing}. In the end, {N} got {art} {thing}.",
    "{N} pointed at the {thing} and asked for {art} {thing}.",
    "The {role} needed the {thing}. After a while, {N} brought {art} {thing} to the {role}.",
    "{N} wanted the {thing} so much that {M} drew {art} {thing} on the wall.",
    "{N} read about the {thing} in a book, and soon {N} owned {art} {thing}.",
    "The {role} described the {thing} to {N}, and {N} painted {art} {thing}.",
    "After the {role} sold the {thing}, {N} ordered {art} {thing} as well.",
    "{N} and {M} argued about the {thing} until {M} fetched {art} {thing}.",
    "Nobody in the {place} had the {thing}, but {N} carried {art} {thing} home.",
    "The {thing} was gone, so {N} chose {art} {thing} instead.",
    "{N} kept the {thing} in the {place} and promised {M} {art} {thing}.",
    "When the {role} mentioned the {thing}, {N} wished for {art} {thing} too.",
)
#: parts of the article sentences built besides `ARTICLE_TEMPLATES` (half of them):
#: "{N} <SEEN> the {thing}<THEN> {M} <ADV><GOT> {art} {thing}." -- tens of thousands of frames
#: (some give the thing to a role: "gave the {role} an apple"), so that a model learns the rule
#: (the article of the thing named before), not the frames. Verbs that mostly take "the"
#: elsewhere take "a"/"an" here too: with 28 verbs of getting only, a model trained on them
#: expected " the" after other verbs ("... went out and found") and fell back on " a"
ARTICLE_SEEN = ("looked at", "talked about", "heard about", "dreamed of", "read about", "liked",
                "admired", "described", "remembered", "forgot about")
ARTICLE_THEN = (", so", ", and then", ". Later,", ". The next day,", ", and in the end",
                ". After that,", ", but soon", ". That evening,")
ARTICLE_GOT = ("bought", "made", "ordered", "chose", "carried", "painted", "drew", "brought",
               "took", "picked", "borrowed", "won", "built", "sent", "kept", "received",
               "wanted to make", "hoped to borrow", "tried to draw", "went to order",
               "gave the {role}", "sent the {role}", "showed the {role}", "offered the {role}",
               "lent the {role}", "sold the {role}", "agreed to bring", "needed to find",
               "brought the {role}", "promised the {role}", "made the {role}", "left the {role}",
               "got the {role}", "bought the {role}",
               # a quarter of the picks: the topic's own verbs ("cooked", "launched", ...), which
               # elsewhere take "the"
               *["{verb}"] * 12)
ARTICLE_ADV = ("", "", "{adv} ")  # a third of the built verbs have an adverb before them
HELDOUT_ARTICLE_TEMPLATES = (
    "All week {N} could not stop thinking about the {thing}, so the next morning {N} went out "
    "and found",
    "The {role} kept staring at the {thing}. At last {N} quietly handed the {role}",
    "On Sunday {M} finally noticed the {thing}, and {M} decided to buy",
    "Soon after {N} asked about the {thing} twice, {M} went to the {place} to get",
)

_pair_rng = random.Random(20240601)
HELDOUT_PAIRS: frozenset[frozenset[str]] = frozenset(
    frozenset(p) for p in _pair_rng.sample(sorted(combinations(NAMES, 2)), 200)
)


def article(word: str) -> str:
    """The indefinite article for `word` ("an" before a vowel letter; the lexicon avoids
    exceptions such as "hour" or "unit")."""
    return "an" if word[0] in "aeiou" else "a"


def plural(noun: str) -> str:
    """A plural good enough for the lexicon ("knife" -> "knives", "cherry" -> "cherries")."""
    if noun.endswith("fe"):
        return noun[:-2] + "ves"
    if noun.endswith(("leaf", "loaf")):
        return noun[:-1] + "ves"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("s", "sh", "ch", "x", "o")) and not noun.endswith(("oo", "eo")):
        return noun + "es"
    return noun + "s"


def template_regex(template: str) -> re.Pattern:
    """A regex matching any filling of `template`: each `{slot}` becomes a run of words."""
    parts = re.split(r"\{\w+\}", template)
    return re.compile(r"[\w' ]+?".join(re.escape(p) for p in parts))


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


class _Slots(dict):
    """Slot values for one sentence, sampled on first use (the same slot repeats its value)."""

    def __init__(self, rng: random.Random, lex: Lexicon, **fixed: str):
        super().__init__(fixed)
        self.rng, self.lex = rng, lex

    def __missing__(self, key: str) -> str:
        rng, lex = self.rng, self.lex
        base = key.rstrip("0123456789")
        if base.startswith("a_"):  # "a_adj_thing" -> "an old apple"
            words = [self[w + key[len(base):]] for w in base[2:].split("_")]
            value = f"{article(words[0])} {' '.join(words)}"
        elif base == "adj":
            value = rng.choice(lex.adjs if rng.random() < 0.7 else GENERAL_ADJS)
        elif base == "things":
            value = plural(self["thing3"])
        else:
            table = {
                "role": lex.roles, "thing": lex.things, "place": lex.places, "verb": lex.verbs,
                "adv": ADVERBS, "num": NUMBER_WORDS,
                "year": [str(y) for y in range(1950, 2030)],
                "hour": [str(h) for h in range(1, 13)],
            }
            value = rng.choice(table[base])
        self[key] = value
        return value


def fill(template: str, rng: random.Random, topic: str, **fixed: str) -> str:
    """`template` with its slots filled from `topic`'s lexicon; `fixed` slots are given."""
    return template.format_map(_Slots(rng, LEXICON[topic], **fixed))


#: sentence kind -> weight in the grammar (`corpus(n, mix=...)` takes another table); an optional
#: "article_an" is the share of article sentences whose noun takes "an" (else nouns are uniform)
DEFAULT_MIX: dict[str, float] = {"topic": 0.45, "ioi": 0.25, "article": 0.15, "repeat": 0.15}
#: the training mix the demo model also sees: dense in indirect-object and article sentences,
#: 60% of the latter with "an" (about a quarter of the lexicon's nouns take it, so " a" is
#: otherwise much the more common article)
TASK_MIX: dict[str, float] = {"topic": 0.2, "ioi": 0.4, "article": 0.3, "repeat": 0.1,
                              "article_an": 0.6}
_KINDS = tuple(DEFAULT_MIX)  # the sentence kinds, in the grammar's order
#: chance that a topic sentence's "a(n) {thing}" or "a(n) {adj} {thing}" names the document's
#: last-named thing again (as "a(n) {thing}", without the adjective), so
#: that an article is predictable from earlier context in every kind of sentence, not only in
#: the article templates (a model then learns that rule, not the templates' frames)
RECALL_P = 0.5


class _Document:
    """Builds one document sentence by sentence (see the module docstring for the grammar)."""

    def __init__(self, rng: random.Random, topic: str, mix: dict[str, float] = DEFAULT_MIX):
        self.rng, self.topic, self.lex, self.mix = rng, topic, LEXICON[topic], mix
        # every IOI or article sentence takes two fresh names: a denser mix needs a larger cast
        self.cast = _cast(rng, 8 if mix == DEFAULT_MIX else 20)
        self.fresh = list(self.cast[2:])  # names not used yet, for IOI / article sentences
        self.sentences: list[str] = []
        self.things: list[str] = []  # the things named so far, in order

    def _fill(self, template: str, **fixed: str) -> str:
        """`template` filled from the topic's lexicon (see `fill`), noting the things it names."""
        slots = _Slots(self.rng, self.lex, **fixed)
        sentence = template.format_map(slots)
        self.things += [v for k, v in slots.items() if re.fullmatch(r"thing\d*", k)]
        return sentence

    def topic_sentence(self, first: bool = False) -> str:
        rng = self.rng
        template = rng.choice(TOPIC_TEMPLATES)
        fixed = {"name": self.cast[int(rng.random() < 0.3)]}
        for adj, slot in re.findall(r"\{a_(adj_)?(thing\d*)\}", template):
            if self.things and rng.random() < RECALL_P:  # "an apple" again, without adjective
                thing = fixed[slot] = self.things[-1]
                fixed[f"a_{adj}{slot}"] = f"{article(thing)} {thing}"
        body = self._fill(template, **fixed)
        if rng.random() < 0.4 or (first and template.startswith("{name}")):
            return f"{rng.choice(OPENERS)}, {body}"
        return _cap(body)

    def _written_or_built(self, written: tuple[str, ...], build) -> str:
        """A template: one of `written`, or (half the time) `build(pick)`, which assembles one
        from parts with `pick = rng.choice` (thousands of frames, so a model learns the rule)."""
        if self.rng.random() < 0.5:
            return self.rng.choice(written)
        return build(self.rng.choice)

    def _opened(self, template: str, sentence: str, first: bool) -> str:
        """`sentence` (filled from `template`), behind an opener if it would open the document
        with a name."""
        if first and template.startswith("{"):
            return f"{self.rng.choice(OPENERS)}, {sentence}"
        return sentence

    def ioi_sentence(self, first: bool = False) -> str | None:
        if len(self.fresh) < 2:
            return None
        io, s = self.fresh.pop(), self.fresh.pop()
        a, b = (io, s) if self.rng.random() < 0.5 else (s, io)
        template = self._written_or_built(IOI_TEMPLATES, lambda pick: (
            f"{pick(IOI_OPEN)}{{A}} and {{B}} {pick(IOI_MET)} the {{place}}{pick(IOI_THEN)} "
            f"{{S}} {pick(IOI_GAVE)} {{IO}}."))
        sentence = self._fill(template, A=a, B=b, S=s, IO=io)
        return self._opened(template, sentence, first)

    def article_sentence(self, first: bool = False) -> str | None:
        if len(self.fresh) < 2:
            return None
        things = self.lex.things
        if "article_an" in self.mix:
            want = "an" if self.rng.random() < self.mix["article_an"] else "a"
            things = [t for t in things if article(t) == want]
        thing = self.rng.choice(things)
        names = {"N": self.fresh.pop(), "M": self.fresh.pop()}
        template = self._written_or_built(ARTICLE_TEMPLATES, lambda pick: (
            f"{{N}} {pick(ARTICLE_SEEN)} the {{thing}}{pick(ARTICLE_THEN)} "
            f"{{{pick('NM')}}} {pick(ARTICLE_ADV)}{pick(ARTICLE_GOT)} {{art}} {{thing}}."))
        sentence = self._fill(template, thing=thing, art=article(thing), **names)
        return self._opened(template, sentence, first)

    def repeat(self) -> str | None:
        if len(self.sentences) < 2:
            return None
        if self.rng.random() < 0.5:
            return self.rng.choice(self.sentences)
        k = self.rng.randint(2, min(3, len(self.sentences)))
        return " ".join(self.sentences[-k:])

    def build(self) -> str:
        makers = {"topic": self.topic_sentence, "ioi": self.ioi_sentence,
                  "article": self.article_sentence, "repeat": self.repeat}
        openings = [k for k in _KINDS if k != "repeat"]
        weights = [self.mix.get(k, 0.0) for k in openings]
        opening = self.rng.choices(openings, weights)[0] if sum(weights) > 0 else "topic"
        self.sentences.append(makers[opening](first=True))
        weights = [self.mix.get(k, 0.0) for k in _KINDS]
        for _ in range(self.rng.randint(3, 8)):
            make = makers[self.rng.choices(_KINDS, weights=weights)[0]]
            self.sentences.append(make() or self.topic_sentence())
        return " ".join(self.sentences)


def _cast(rng: random.Random, k: int) -> list[str]:
    """`k` distinct names, no two of which form a held-out pair."""
    cast: list[str] = []
    for name in rng.sample(NAMES, len(NAMES)):
        if all(frozenset((name, c)) not in HELDOUT_PAIRS for c in cast):
            cast.append(name)
            if len(cast) == k:
                break
    return cast


def _check_mix(mix: dict[str, float]) -> None:
    weights = [mix.get(k, 0.0) for k in _KINDS]
    if (set(mix) - {*_KINDS, "article_an"} or min(weights) < 0 or sum(weights) <= 0
            or not 0 <= mix.get("article_an", 0.0) <= 1):
        raise ValueError(f"mix must map sentence kinds {list(_KINDS)} to non-negative weights "
                         f"with a positive sum (and optionally 'article_an' to a share in "
                         f"[0, 1]), got {mix!r}")


def corpus_with_labels(n: int, seed: int = 0, *, mix: dict[str, float] = DEFAULT_MIX
                       ) -> list[tuple[str, str]]:
    """`n` (document, topic) pairs, deterministic from `seed`; topics cycle through `TOPICS`
    in a shuffled order so that every topic is equally represented. `mix` weighs the sentence
    kinds (`DEFAULT_MIX`; `TASK_MIX` is dense in indirect-object and article sentences)."""
    _check_mix(mix)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)] if n >= len(TOPICS) else rng.choice(TOPICS)
        out.append((_Document(rng, topic, mix).build(), topic))
    rng.shuffle(out)
    return out


def corpus(n: int, seed: int = 0, *, mix: dict[str, float] = DEFAULT_MIX) -> list[str]:
    """`n` documents of synthetic English-like text, deterministic from `seed` (and `mix`, the
    weights of the sentence kinds)."""
    return [text for text, _ in corpus_with_labels(n, seed, mix=mix)]
