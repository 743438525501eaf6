"""The toyworld's wording tables: caption phrases, templates, requests, questions, answers, general text.

Every wording list comes in two splits: "train" wordings go into the training annotations, "heldout" ones are
kept for evaluation. ``nextmm.toyworld.language`` draws from these tables; the grammar of people's own requests
(``nextmm.toyworld.asking``) has its own tables in ``nextmm.toyworld.phrasebook``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SPLITS = ("train", "heldout")


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]
    heldout: tuple[str, ...]

    def get(self, split: str) -> tuple[str, ...]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return getattr(self, split)


def _s(train: Sequence[str], heldout: Sequence[str]) -> Split:
    return Split(tuple(train), tuple(heldout))


@dataclass(frozen=True)
class Words:
    keywords: tuple[str, ...]  # words only this concept's text uses
    subjects: Split  # noun phrases a request names: "show me {subject}"
    image: Split  # what a picture shows
    video: Split  # what a clip shows happening
    audio: Split  # what is heard
    looks: str  # text-only answers (full sentences)
    sounds: str
    moves: str
    vlogs: tuple[str, ...]  # "surf" -> "surf vlog"
    vlog_music: str  # "lively" or "calm": the music a "<vlog> with music" request gets


WORDS: dict[str, Words] = {
    "beach": Words(
        keywords=("beach", "beaches", "sea", "seaside", "surf", "surfer", "surfers", "surfing", "surfboard", "shore",
                  "ocean", "wave", "waves"),
        subjects=_s(["the beach", "a surfer on a wave", "the sea", "a sunny beach", "surfing", "the seaside",
                     "a surfer at the beach", "the ocean shore"],
                    ["the coast with a surfer", "an ocean beach with surf", "ocean waves and a surfer"]),
        image=_s(["a surfer riding a wave at the beach", "waves crashing on a sunny shore",
                  "a sunny beach with a surfer on the sea",
                  "blue sea waves and a sandy beach", "a surfer on a board in the ocean",
                  "the seaside with waves and a surfer"],
                 ["a surfboarder balancing on the ocean under the sun",
                  "the sunny coast where a surfer catches the waves"]),
        video=_s(["waves rolling onto the beach as a surfer rides by", "a surfer gliding across the sea",
                  "ocean waves rolling to the shore", "surfing on the waves at a sunny beach"],
                 ["a surfer sliding past on rolling ocean swells", "the surf rolling in while someone surfs"]),
        audio=_s(["waves crashing on the shore", "the sea", "ocean waves", "sea waves washing onto the beach",
                  "the roar of the surf"],
                 ["surf breaking at the seaside", "the ocean swelling and crashing"]),
        looks="The beach has a blue sea with white waves, a sandy shore, a bright sun and a surfer on a board.",
        sounds="At the beach you hear the waves: a rushing roar that swells and crashes on the shore.",
        moves="At the beach the waves roll towards the shore and the surfer glides across the sea.",
        vlogs=("surf", "beach"),
        vlog_music="lively",
    ),
    "forest": Words(
        keywords=("forest", "forests", "woods", "woodland", "bird", "birds", "birdsong", "camping"),
        subjects=_s(["the forest", "a green forest", "the woods", "a forest with birds", "a woodland"],
                    ["a dense green woodland", "deep woods full of birds"]),
        image=_s(["a green forest of pine trees", "tall trees in the woods", "a dense forest under a pale sky",
                  "dark green trees and birds in the forest", "a woodland of green trees"],
                 ["rows of conifers forming thick woods", "a forest seen from the ground, tree after tree"]),
        video=_s(["trees swaying in the forest", "birds flying between the trees in the woods",
                  "a forest moving in the breeze", "green trees rocking gently in the woods"],
                 ["branches of the woodland bending as birds dart past", "the forest canopy shifting back and forth"]),
        audio=_s(["birds singing", "birdsong in the forest", "birds chirping in the woods", "a bird calling"],
                 ["a chorus of birds in the woodland", "tweeting birds among the trees"]),
        looks="The forest is full of tall green trees with brown trunks under a pale sky, with small birds.",
        sounds="In the forest you hear birdsong: quick rising chirps of birds.",
        moves="In the forest the trees sway in the breeze and birds flit between them.",
        vlogs=("forest", "camping"),
        vlog_music="calm",
    ),
    "city": Words(
        keywords=("city", "cities", "street", "streets", "traffic", "car", "cars", "building", "buildings", "town",
                  "downtown", "engine", "engines"),
        subjects=_s(["the city", "a busy street", "city traffic", "the town", "a city street with cars", "downtown"],
                    ["an urban street full of cars", "tall buildings in a big city"]),
        image=_s(["tall buildings with lit windows and cars on the street", "a city street with traffic",
                  "buildings and cars in the city", "a busy road in town", "the city skyline above a street"],
                 ["office blocks looming over downtown traffic", "an urban scene of buildings and cars"]),
        video=_s(["cars driving along a city street", "traffic moving past tall buildings", "cars passing through town",
                  "a busy street with cars going by"],
                 ["vehicles streaming down a downtown avenue", "the city traffic rolling past"]),
        audio=_s(["traffic in the city", "car engines humming", "the rumble of city traffic",
                  "a car engine passing by"],
                 ["engines droning on a busy street", "downtown traffic droning on"]),
        looks="The city has tall grey and brown buildings with lit yellow windows above a dark street with "
              "coloured cars.",
        sounds="In the city you hear traffic: the low hum of car engines and a rumble as cars pass.",
        moves="In the city the cars drive along the street past the buildings.",
        vlogs=("city", "street"),
        vlog_music="lively",
    ),
    "snow": Words(
        keywords=("snow", "snowy", "snowfall", "snowflake", "snowflakes", "winter", "wintry", "ski", "skiing"),
        subjects=_s(["a snowy field", "the snow", "a winter landscape", "snowfall", "snowy pine trees",
                     "a winter day"],
                    ["a wintry plain", "fresh snow on the ground"]),
        image=_s(["a snowy field with pine trees", "snow covering the ground in winter",
                  "snowflakes falling over white hills",
                  "a white winter landscape", "pine trees in the snow"],
                 ["a blanket of snow with a few dark pines", "a wintry scene, all white"]),
        video=_s(["snow falling on a white field", "snowflakes drifting down in winter", "a snowfall over pine trees",
                  "snow slowly falling on the ground"],
                 ["flakes of snow floating down onto the pines", "a quiet winter snowfall"]),
        audio=_s(["footsteps crunching in the snow", "walking through snow", "boots crunching on snow",
                  "steps in fresh snow"],
                 ["someone trudging through deep snow", "the crunch of feet in the snow"]),
        looks="A snowy field is white, with a pale grey sky, dark pine trees with white caps and falling snowflakes.",
        sounds="Walking in the snow makes a soft crunching sound with every step.",
        moves="In a snowfall the snowflakes drift slowly down, swaying from side to side.",
        vlogs=("snow", "ski"),
        vlog_music="calm",
    ),
    "night": Words(
        keywords=("night", "nights", "nighttime", "star", "stars", "starry", "moon", "moonlit", "moonlight",
                  "crickets", "cricket",
                  "stargazing", "midnight"),
        subjects=_s(["the night sky", "a starry night", "the moon and stars", "a night in the hills", "stars at night"],
                    ["a moonlit sky", "a dark night full of stars"]),
        image=_s(["a starry night sky with the moon", "the moon above dark hills at night",
                  "stars shining in a dark blue sky",
                  "a crescent moon and stars", "a night sky over black hills"],
                 ["a moonlit sky sprinkled with stars", "dark hills under a starry sky at midnight"]),
        video=_s(["stars twinkling in the night sky", "the moon and twinkling stars at night",
                  "a starry sky sparkling above the hills"],
                 ["stars flickering over the hills at midnight", "a night sky where the stars glimmer"]),
        audio=_s(["crickets chirping at night", "the sound of crickets", "crickets in the dark",
                  "a quiet night with crickets"],
                 ["a cricket chorus at midnight", "nighttime insects chirping"]),
        looks="At night the sky is dark blue and black, full of stars, with a pale crescent moon above black hills.",
        sounds="At night you hear crickets: short high chirps in the quiet dark.",
        moves="At night the stars twinkle in the dark sky.",
        vlogs=("night", "stargazing"),
        vlog_music="calm",
    ),
    "desert": Words(
        keywords=("desert", "deserts", "dune", "dunes", "cactus", "cacti", "tumbleweed", "wind", "windy", "sahara"),
        subjects=_s(["the desert", "sand dunes in the desert", "a hot desert", "a desert with cacti", "the dunes"],
                    ["a dry sahara landscape", "a windy desert plain"]),
        image=_s(["sand dunes and cacti in the desert", "a hot desert under a white sun", "orange dunes and a cactus",
                  "a desert with a tumbleweed", "the desert sun over sand dunes"],
                 ["a cactus standing among golden dunes", "a dry sahara scene with a blazing sun"]),
        video=_s(["a tumbleweed rolling across the desert", "wind blowing sand over the dunes",
                  "sand drifting in the desert wind", "a tumbleweed blown past the cacti"],
                 ["gusts sweeping sand along the dunes", "a tumbleweed bouncing through the sahara"]),
        audio=_s(["wind blowing in the desert", "a dry desert wind", "the whistle of the wind over the dunes",
                  "gusts of desert wind"],
                 ["a windy gale across the sahara", "air howling over the dunes"]),
        looks="The desert has orange and yellow sand dunes, green cacti and a white-hot sun in a pale sky.",
        sounds="In the desert you hear the wind: low gusts with a faint whistle.",
        moves="In the desert the wind blows sand and a tumbleweed across the dunes.",
        vlogs=("desert", "sahara"),
        vlog_music="calm",
    ),
    "rain": Words(
        keywords=("rain", "rains", "rainy", "raining", "rainfall", "raindrops", "drizzle", "puddle", "puddles",
                  "storm", "stormy", "umbrella"),
        subjects=_s(["the rain", "a rainy day", "a storm", "rainfall", "rain falling on the ground"],
                    ["a wet drizzle", "a stormy downpour of rain"]),
        image=_s(["rain falling from dark clouds", "a rainy day with puddles", "grey storm clouds and rain",
                  "rain streaks over wet ground", "puddles in the rain"],
                 ["a drizzle under a heavy grey sky", "raindrops over a soaked ground with puddles"]),
        video=_s(["rain pouring down from grey clouds", "raindrops falling into puddles", "a storm with falling rain",
                  "heavy rain coming down"],
                 ["a downpour of rain streaking to the ground", "ripples spreading in puddles as it rains"]),
        audio=_s(["rain falling", "the sound of rain", "raindrops pattering", "heavy rainfall", "rain on the ground"],
                 ["a drizzle tapping on the pavement", "the hiss of a rainy downpour"]),
        looks="A rainy day has a dark grey sky with clouds, wet dark ground with puddles and light slanted "
              "rain streaks.",
        sounds="Rain makes a soft pattering sound, a steady hiss of drops.",
        moves="In the rain the drops fall fast and ripples spread on the puddles.",
        vlogs=("rainy day", "rain"),
        vlog_music="calm",
    ),
    "concert": Words(
        keywords=("concert", "concerts", "stage", "party", "parties", "dance", "dancing", "crowd", "lively", "upbeat",
                  "band", "spotlight", "spotlights", "festival"),
        subjects=_s(["a concert", "a party", "a band on stage", "a lively concert", "a dance party",
                     "a festival stage"],
                    ["a crowded gig with a band", "an upbeat show on a stage"]),
        image=_s(["a concert stage with coloured spotlights", "a crowd in front of a lit stage",
                  "a band playing at a concert",
                  "spotlights over a dancing crowd", "a party with bright stage lights"],
                 ["a performer in the spotlight before a crowd", "colourful beams above a festival crowd"]),
        video=_s(["spotlights sweeping over a dancing crowd", "a crowd dancing at a concert",
                  "stage lights flashing at a party",
                  "people dancing in front of the stage"],
                 ["beams of colour swinging across a festival crowd", "a crowd bouncing to a band"]),
        audio=_s(["lively music", "upbeat music with a fast beat", "a band playing lively music",
                  "party music with drums",
                  "lively dance music"],
                 ["a catchy upbeat tune for a party", "energetic concert music"]),
        looks="A concert has a dark purple hall, a lit stage with a performer, coloured spotlights and a black crowd.",
        sounds="At a concert you hear lively music: a fast happy melody with bass and drums.",
        moves="At a concert the spotlights sweep and change colour and the crowd bounces to the beat.",
        vlogs=("concert", "party"),
        vlog_music="lively",
    ),
    "meadow": Words(
        keywords=("meadow", "meadows", "flower", "flowers", "wildflowers", "bee", "bees", "buzzing", "picnic",
                  "blossoms"),
        subjects=_s(["a meadow", "a flower meadow", "a meadow with bees", "wildflowers", "a meadow in spring"],
                    ["a field of blossoms", "bees among the flowers"]),
        image=_s(["a green meadow full of flowers", "wildflowers in a meadow under a blue sky",
                  "red and yellow flowers in a meadow", "a flower meadow with white clouds",
                  "bees over a meadow of flowers"],
                 ["a grassy field dotted with blossoms", "spring blossoms covering a meadow"]),
        video=_s(["bees buzzing over the flowers", "clouds drifting above a meadow",
                  "bees flying around a flower meadow",
                  "a meadow with bees zigzagging between flowers"],
                 ["bees hovering above the wildflowers", "a meadow where bees dart around"]),
        audio=_s(["bees buzzing", "the buzzing of bees", "a bee flying by", "bees humming in a meadow"],
                 ["a swarm of bees droning", "the buzz of bees among blossoms"]),
        looks="A meadow is a bright green field dotted with red, yellow, white and purple flowers under a blue sky.",
        sounds="In a meadow you hear bees buzzing as they fly from flower to flower.",
        moves="In a meadow the bees zigzag over the flowers and white clouds drift by.",
        vlogs=("meadow", "picnic"),
        vlog_music="calm",
    ),
    "mountain": Words(
        keywords=("mountain", "mountains", "peak", "peaks", "alpine", "alps", "hiking", "summit", "valley", "bell",
                  "bells", "cowbell", "cowbells"),
        subjects=_s(["the mountains", "a mountain peak", "snowcapped mountain peaks", "an alpine valley", "the alps"],
                    ["a high summit above a valley", "rocky alpine peaks"]),
        image=_s(["snowcapped mountain peaks over a green valley", "grey mountains with white peaks",
                  "the alps under a blue sky",
                  "a green valley below tall mountains", "mountain peaks and clouds"],
                 ["jagged summits topped with white above an alpine valley", "rocky peaks towering over a valley"]),
        video=_s(["clouds drifting past mountain peaks", "clouds moving over the mountains",
                  "clouds rolling over an alpine valley"],
                 ["mist gliding across the peaks", "clouds passing over a summit"]),
        audio=_s(["cowbells ringing", "bells ringing in the mountains", "the sound of alpine cowbells",
                  "a bell ringing"],
                 ["the clang of bells in a valley", "chiming cowbells on a mountain pasture"]),
        looks="The mountains are large grey peaks with white snowcaps above a green valley, under a deep blue sky.",
        sounds="In the mountains you hear cowbells ringing out across the valley.",
        moves="In the mountains white clouds drift slowly across the peaks.",
        vlogs=("mountain", "hiking"),
        vlog_music="calm",
    ),
    "sunset": Words(
        keywords=("sunset", "sunsets", "dusk", "twilight", "sundown", "evening", "setting", "calm", "soothing",
                  "relaxing", "peaceful"),
        subjects=_s(["a sunset", "the sunset over the hills", "dusk", "a calm sunset", "an orange sunset"],
                    ["the sun going down at twilight", "a peaceful evening sundown"]),
        image=_s(["an orange sunset over dark hills", "the sun setting in a purple and orange sky",
                  "a red sun low at dusk",
                  "a sunset with pink clouds", "a big orange sun going down at sunset"],
                 ["twilight colours glowing above the hills", "a fiery sundown behind a hill"]),
        video=_s(["the sun slowly setting behind the hills", "the sun sinking at sunset",
                  "clouds drifting at dusk as the sun goes down"],
                 ["the sundown sky fading as the sun drops", "a sunset where the sun slips below the hills"]),
        audio=_s(["calm music", "soft relaxing music", "calm piano chords", "soothing slow music",
                  "peaceful gentle music"],
                 ["a mellow calm melody", "slow relaxing tunes"]),
        looks="A sunset has a purple and orange sky, a large orange-red sun low on the horizon and dark purple hills.",
        sounds="A sunset goes with calm music: slow, soft chords.",
        moves="At sunset the sun sinks slowly behind the hills while thin clouds drift.",
        vlogs=("sunset", "evening"),
        vlog_music="calm",
    ),
}

# ------------------------------------------------------------------------------------------ templates
CAPTION_TEMPLATES = {
    "image": _s(["{x}", "a picture of {x}", "a photo of {x}", "an image of {x}", "a drawing of {x}"],
                ["a snapshot showing {x}", "an illustration depicting {x}"]),
    "video": _s(["{x}", "a video of {x}", "a clip of {x}", "footage of {x}"],
                ["a short film showing {x}", "moving pictures of {x}"]),
    "audio": _s(["{x}", "the sound of {x}", "a recording of {x}", "audio of {x}"],
                ["you can hear {x}", "a soundtrack of {x}"]),
}

REQUESTS = {
    "image": _s(["show me a picture of {x}", "draw {x}", "generate an image of {x}", "can you make a picture of {x}?",
                 "I want to see a photo of {x}", "paint {x} for me", "create an image of {x}"],
                ["could you sketch {x}?", "I'd like an illustration of {x}, please",
                 "produce a still picture showing {x}"]),
    "video": _s(["show me a video of {x}", "make a clip of {x}", "generate a video of {x}", "animate {x}",
                 "I want to watch a video of {x}", "create a short video of {x}"],
                ["film {x} for me", "could you put together some footage of {x}?",
                 "I'd like a moving clip showing {x}"]),
    "audio": _s(["play the sound of {x}", "let me hear {x}", "generate audio of {x}", "make a sound of {x}",
                 "I want to hear {x}", "create a recording of {x}"],
                ["could you record {x} for me?", "produce some audio of {x}", "I'd like to listen to {x}"]),
}
# Requests for more than one medium: modalities (in answer order) -> templates.
MULTI_REQUESTS = {
    ("image", "audio"): _s(["show me a picture of {x} and let me hear it", "draw {x} and play its sound",
                            "I want to see and hear {x}"],
                           ["illustrate {x} and also record how it sounds"]),
    ("image", "video"): _s(["show me a picture and a video of {x}", "draw {x} and then animate it",
                            "make an image and a clip of {x}"],
                           ["give me a still and some footage of {x}"]),
    ("video", "audio"): _s(["make a video of {x} and play its sound", "show me a clip of {x} and let me hear it",
                            "generate a video and audio of {x}"],
                           ["film {x} and record its noise too"]),
    ("image", "audio", "video"): _s(["show me a picture, a sound and a video of {x}",
                                     "make an image, a clip and a sound of {x}"],
                                    ["give me a still, some footage and a recording of {x}"]),
}
VLOG_REQUESTS = _s(["{v} vlog", "make a {v} vlog", "make me a {v} vlog", "I want a {v} vlog",
                    "create a {v} vlog for me"],
                   ["put together a {v} vlog", "could you produce a little {v} vlog?"])
VLOG_MUSIC_REQUESTS = _s(["{v} vlog with music", "make a {v} vlog with some music", "a {v} vlog with background music"],
                         ["{v} vlog with a soundtrack, please"])
MUSIC = {"lively": "concert", "calm": "sunset"}  # whose sound a "<vlog> with music" request gets

QUESTIONS = {  # text-only questions: the answer names no medium
    "looks": _s(["what does {x} look like?", "describe {x} in words.", "tell me what {x} looks like.",
                 "what colours are in {x}?"],
                ["in words only, how would you describe {x}?", "without any pictures, what is {x} like?"]),
    "sounds": _s(["what sound does {x} make?", "what does {x} sound like?", "what noise comes from {x}?"],
                 ["explain in words the noise {x} makes.", "which sounds belong to {x}?"]),
    "moves": _s(["what moves in {x}?", "how do things move in {x}?", "what happens in {x}?"],
                ["in a sentence, what is moving in {x}?", "tell me how {x} changes over time."]),
}
CHAT = (  # text-only, about no concept
    ("hello", "Hello! I can show you pictures, sounds and videos of my little world."),
    ("hi there", "Hi! Ask me for a picture, a sound, a video or a vlog of a place."),
    ("what can you do?", "I can describe pictures, sounds and videos, and make new ones of the places I know."),
    ("who are you?", "I am a small multimodal model trained on a toy world of simple scenes."),
    ("thank you", "You are welcome!"),
    ("which places do you know?", "I know {places}."),
)

DESCRIBE = {  # X -> text questions about an input medium
    "image": _s(["Describe this image.", "What is in this picture?", "What do you see?", "What place is this?",
                 "Write a caption for this image."],
                ["What is depicted here?", "Summarise this photo in one sentence."]),
    "video": _s(["What happens in this video?", "Describe this clip.", "What is going on in this video?",
                 "Write a caption for this video."],
                ["Explain the scene in this footage.", "What is moving here?"]),
    "audio": _s(["What is this sound?", "Describe what you hear.", "What can you hear in this recording?",
                 "Write a caption for this audio."],
                ["What is making this noise?", "Tell me about this audio clip."]),
}
DESCRIBE_ANSWERS = {
    "image": ("{c}.", "This is {c}.", "It shows {c}.", "I can see {c}."),
    "video": ("{c}.", "The video shows {c}.", "This clip shows {c}.", "It shows {c}."),
    "audio": ("{c}.", "This is the sound of {c}.", "I can hear {c}.", "It sounds like {c}."),
}
FOLLOW_UPS = {  # a later turn asking for another medium of the same scene
    "image": ("show me what this place looks like", "draw a picture of it", "show me a picture of it"),
    "video": ("now turn it into a video", "make a clip of it", "show me this moving"),
    "audio": ("play a sound that matches it", "let me hear what it sounds like", "make a matching sound"),
}
VLOG_ANSWERS = (
    "Here is your {v} vlog: <image> <audio> <video>",
    "Here is your {v} vlog! A picture <image>, a sound <audio> and a clip <video>.",
    "Your {v} vlog is ready: a scene <image>, its soundtrack <audio> and a video <video>.",
)


# ------------------------------------------------------------------------------------- general text
# What a real LLM brings from its web text and a toy one must read somewhere: the world's media words in
# plain sentences, not in requests. Words of both splits share the same slots ("sketch" where "draw" goes,
# "footage" where "video" goes), so a model that learns a request's medium from the train words has seen
# the held-out words used alike. Every word of the held-out split (the templates' "could", "give", "produce",
# the phrases' "coast", "downpour", "gig") is used somewhere in this text, in other sentences, as a real
# LLM has read every English word: held-out wording is new phrasing, never an unknown word. Only pretraining
# reads these: the language model's corpus (corpus.py), and the encoder's general text (general_text in
# nextmm/toyworld/pretrain_encoder.py): GLOSSARY, ALT_TEXT and single NARRATIVE sentences (media_sentence). No held-out
# subject or phrase and no fixed part of a held-out template is ever written here (heldout_fragments;
# narrative() and media_sentence() draw again where one would be).
MEDIA_WORDS = {  # medium -> (verbs: "{p} likes to {verb} {x}", nouns: "{p} made {noun} of {x}", where it ends up)
    "image": (("draw", "paint", "sketch", "photograph", "illustrate", "depict"),
              ("a picture", "an image", "a photo", "a drawing", "a painting", "an illustration", "a sketch",
               "a still", "a snapshot", "a still picture"),
              ("hangs on the wall", "is printed in a book", "is pinned to the board")),
    "video": (("film", "animate", "videotape"),
              ("a video", "a clip", "a short video", "some footage", "a film", "a short film", "a moving clip",
               "some moving images"),
              ("plays on the screen", "runs on the television", "is shown in the cinema")),
    "audio": (("record", "hear", "listen to", "tape"),
              ("a sound", "some audio", "a recording", "a noise", "a sound clip", "a soundtrack"),
              ("plays through the speakers", "is heard in the headphones", "plays on the radio")),
    "text": (("describe", "explain", "talk about", "write about", "summarise"),
             ("a description", "an explanation", "a few words", "a sentence"),
             ("is written down in plain words", "is told aloud, with no sound effects or clip")),
}
PEOPLE = ("Anna", "Ben", "my friend", "the artist", "a visitor", "someone", "my sister", "the guide")
MAKING = ("made", "created", "produced", "generated", "gave me")
# Words a request may be phrased with, each set used alike in the same slots (a request's "could you" is its
# "can you", its "give me" its "show me").
MODALS = ("can", "could", "will", "would")
HANDING = ("give", "show", "send", "hand")
CREATING = ("make", "create", "produce", "generate")
NARRATIVE = (  # one sentence about one medium: {p} person, {verb}, {noun}, {where}, {x} a subject
    "{p} likes to {verb} {x}.",
    "{p} wanted to {verb} {x}, and {noun} of it {where}.",
    "{p} {making} {noun} of {x}.",
    "{noun} of {x} {where}.",
    "{p} {making} {noun}; it {where}.",
    "{p} {modal} {verb} {x} without any help.",
    "{p} {modal} {verb} {x}.",
    "{p} said: I'd love to {verb} {x} one day, please.",
    "{p} is making {noun} of {x} for a friend.",
    "{p} will {handing} a friend {noun} of {x}.",
    "{p} {modal} {creating} {noun} of {x}.",
    "{p} put {noun} of {x} together with some music.",
    "{noun} showing {x} {where}.",
    "{noun} depicting {x} {where}.",
    "{x} is depicted in {noun} that {where}.",
    "{p} only wanted {noun} of {x}, and it {where}.",
)
NARRATIVE_PAIRS = (  # one sentence about two media: {verb}/{noun} the first's, {verb2}/{noun2} the second's
    "{p} wanted to {verb} {x} and also {verb2} it.",
    "{p} {making} {noun} and also {noun2} of {x}.",
)
GLOSSARY = {  # per concept: the held-out phrases' words in sentences of their own (general text of the LLM and encoder)
    "beach": ("A surfboarder is a surfer: someone who surfs, balancing on a board while sliding down the face of "
              "a wave.",
              "The coast is where the sea meets the land; out at sea each wave keeps swelling, then breaking "
              "on the sand, and a surfer catches one and rides it in."),
    "forest": ("Conifers grow in long rows in the woods, forming thick green walls; seen from a path, the forest "
               "goes on for miles, one tree after another.",
               "The canopy is the roof of branches high up in a forest; in a breeze the branches are bending "
               "back and forth, the leaves keep shifting, and birds dart among them, tweeting in chorus."),
    "city": ("Urban means of the city: office blocks, a wide avenue and vehicles such as cars and buses.",
             "In the city the buildings are looming high above the street, the cars are streaming past and "
             "their engines keep droning all day."),
    "snow": ("In winter snow covers the ground like a white blanket, the pines hold white flakes on their "
             "branches and snowflakes are floating in the air; it is all white.",
             "Someone trudging through the snow hears a crunch under their feet at every step."),
    "night": ("At night, stars are sprinkled across the dark; they glimmer, flickering like tiny lights, and the "
              "moonlit hills are silver.",
              "Crickets are insects that sing in chorus on a night in summer, the place where it is quiet."),
    "desert": ("In the desert the dunes look golden and the sun is blazing; here and there a cactus is standing "
               "alone among them.",
               "A gale is a very strong wind; in the desert the air starts howling and a tumbleweed goes "
               "bouncing across the sand."),
    "rain": ("A downpour is heavy rain: the ground gets soaked and raindrops go streaking past the window.",
             "In the rain the pavement is wet, with drops tapping on it, and on the puddles ring after ring "
             "keeps spreading."),
    "concert": ("A gig is a concert by a band; the hall gets crowded and the crowd dances before the stage.",
                "At a concert the spotlights send out colourful beams that keep swinging around; everyone is "
                "bouncing, and the band plays a catchy, energetic tune."),
    "meadow": ("A meadow is grassy; the bees keep hovering near the flowers, where they dart from one blossom to "
               "the next.",
               "When many bees fly together they form a swarm, and their buzz is a soft droning sound as they "
               "fly among the wildflowers."),
    "mountain": ("Mountains are rocky, with jagged tops; each summit is often topped by clouds, and summits and "
                 "peaks stand towering high over the valley.",
                 "In the mountains mist hangs over the valley, and cowbells clang and keep chiming on the pasture "
                 "where the cows graze."),
    "sunset": ("At sunset the sky looks fiery and glowing; the light keeps fading as the sun slips down, and "
               "soon each hill is dark. The sky changes colour in a short time.",
               "Mellow tunes are soft and calm; such tunes belong to a quiet evening at sunset, which they suit."),
}


# Per concept: a sentence with its keywords, those of the held-out captions too ("sundown", "drizzle"), in the
# way of an alt text. The encoder's general text only: the language model's corpus holds the held-out captions'
# words already (among others as the keywords that stand in for media, corpus.stand_in), the text tower nowhere else.
ALT_TEXT = {
    "beach": "By the seaside the surfers wait on the shore with a surfboard, then paddle out to surf.",
    "forest": "Camping in the woodland, you hear birdsong from the forests all around.",
    "city": "Downtown, the streets are a scene of traffic: cars, buses and the noise of their engines.",
    "snow": "On a wintry day the skiers glide over a white scene, with only a few pines showing.",
    "night": "At nighttime a cricket sings, and at midnight the moonlight falls on the hills.",
    "desert": "The Sahara is a windy desert; a desert scene shows dunes, cacti and a tumbleweed.",
    "rain": "A drizzle is light rain; when it rains, puddles form and people open an umbrella.",
    "concert": "At a festival a band plays on the stage under a spotlight while the crowd is dancing.",
    "meadow": "In spring a meadow is full of blossoms and wildflowers, and bees are buzzing over them.",
    "mountain": "Hiking in the alps, you climb from an alpine valley up to a summit and watch the clouds passing "
                "by.",
    "sunset": "At sundown the sun drops behind the hills; in the twilight the sky turns warm colours, calm and "
              "peaceful.",
}
