"""How people ask the toy model for things: the words and frames of the request grammar (tables only).

``nextmm.toyworld.asking`` composes requests, questions and their answers from these tables. They are meant to
cover how people talk in general, not a list of prompts: each medium by its nouns ("a pic", "some footage"), by
verbs that make it ("sketch", "film"), by the sense it is for ("let me hear"); each place by the names people
give it ("the seaside", "a rainy afternoon"); frames from terse ("beach pic") to polite ("could you please ...?")
and chatty ("hey so um ..."). A slot in braces is filled by the grammar: {x} a place, {np} a noun phrase ("a
photo of the dunes"), {vp} a verb phrase ("paint the dunes"), {ref} the medium the user attached ("this photo").
"""


# ------------------------------------------------------------------------------------------ the places
# What people call each place: names a request can put where {x} goes. Every one names its place by one of the
# world's keywords or a plain synonym of them, and no other place's.
PLACES = {
    "beach": ("the beach", "a beach", "the seaside", "the sea", "the ocean", "the shore", "a sunny beach",
              "a surfer", "surfing", "surfers on the waves", "the waves", "ocean waves", "a beach with surfers",
              "a day at the beach", "the seashore", "a surf spot", "the coastline", "a surfer riding a wave",
              "the beach in summer", "sand and sea", "a tropical beach", "big waves", "the surf", "a beach day",
              "the sea shore", "a beach by the sea", "breaking waves", "the ocean with surfers"),
    "forest": ("the forest", "a forest", "the woods", "a wood", "woodland", "a pine forest", "a green forest",
               "trees and birds", "birds in the trees", "a walk in the woods", "the forest with birds singing",
               "tall trees", "a quiet forest", "a forest full of birds", "deep forest", "the woods in spring",
               "birdsong", "a forest clearing", "a jungle of trees", "the rainforest canopy", "a wooded area",
               "an old forest", "a grove of trees", "the trees", "forest birds"),
    "city": ("the city", "a city", "downtown", "a busy street", "city traffic", "traffic", "a street with cars",
             "the town", "a big city", "skyscrapers", "cars on the road", "a city street", "rush hour",
             "the city centre", "urban traffic", "a town street", "buildings and cars", "a highway with cars",
             "the streets of a city", "an urban area", "a busy road", "the city at rush hour",
             "a street full of traffic", "office buildings", "a metropolis", "the town centre"),
    "snow": ("the snow", "snow", "a snowy day", "a snowy field", "winter", "a winter landscape", "snowfall",
             "falling snow", "snowflakes", "snowy pine trees", "fresh snow", "a winter day", "deep snow",
             "a snowy landscape", "snow falling", "a walk in the snow", "skiing", "a ski slope", "a winter wonderland", "a blizzard",
             "snowy pines", "a frozen white landscape", "the first snow"),
    "night": ("the night", "the night sky", "a starry night", "stars", "the stars", "the moon and stars",
              "a night in the countryside", "midnight", "a dark night", "crickets at night", "a summer night",
              "the sky at night", "a clear night", "a moonlit night", "the moon", "stargazing", "nighttime",
              "a night full of stars", "the stars at night", "a starlit sky", "night time",
              "the dark sky", "the night outdoors", "a night under the stars"),
    "desert": ("the desert", "a desert", "sand dunes", "the dunes", "a hot desert", "the sahara", "a cactus",
               "cacti in the desert", "a tumbleweed", "desert wind", "a sandy desert", "a dry desert",
               "the desert at noon", "dunes of sand", "a desert with cacti", "the wind in the desert", "sand",
               "a sandy wasteland", "the arid desert", "desert dunes", "a sandstorm"),
    "rain": ("the rain", "rain", "a rainy day", "a rainy afternoon", "a storm", "a rainstorm", "a downpour",
             "drizzle", "a shower of rain", "puddles", "rain falling", "heavy rain", "a wet rainy road",
             "raindrops", "rainy weather", "a thunderstorm", "the rain on the ground", "a stormy day", "bad weather",
             "a wet day", "showers", "pouring rain", "grey rainy weather", "rain on the roof"),
    "concert": ("a concert", "the concert", "a gig", "a live show", "a rock concert", "a festival", "a band on stage",
                "a band playing", "a party", "a dance party", "a stage with lights", "a crowd dancing",
                "a music festival", "a club", "a live band", "spotlights on a stage", "a show on stage",
                "a concert crowd", "a rock show", "a live gig", "a band", "a music show", "a disco",
                "a dance floor", "a live performance", "a rave", "a concert hall"),
    "meadow": ("a meadow", "the meadow", "a field of flowers", "wildflowers", "a flower field", "flowers",
               "bees", "bees and flowers", "a grassy field", "spring flowers", "a flowery meadow",
               "a meadow in spring", "a green field with flowers", "a picnic in a meadow", "a field full of bees",
               "blossoms and bees", "a garden of wildflowers", "a flowery field",
               "a field in bloom", "daisies and tulips", "buzzing bees", "a summer field", "the countryside in bloom"),
    "mountain": ("the mountains", "a mountain", "mountains", "the alps", "mountain peaks", "a peak", "a summit",
                 "a mountain valley", "an alpine valley", "cowbells", "the hills and peaks", "a hike in the mountains",
                 "high peaks", "rocky mountains", "a mountain top", "cows grazing in the alps", "hiking",
                 "a mountain range", "the highlands", "snowcapped peaks", "a mountain pasture", "the summit"),
    "sunset": ("the sunset", "a sunset", "dusk", "sundown", "twilight", "the evening sky", "the sun going down",
               "an orange sunset", "a sunset over the hills", "the setting sun", "sunset colours",
               "the end of the day", "a sunset sky", "a red sky at dusk", "the sun setting", "golden hour",
               "the evening", "an evening sky", "the sun going down over hills", "the sky at sunset"),
}
# What people add about the place they want: "a picture of the beach, with waves and a surfer".
DETAILS = {
    "beach": ("waves and a surfer", "blue water and sand", "a surfer on a board", "white waves", "lots of sand",
              "the sun shining on the sea", "crashing waves"),
    "forest": ("tall trees and birds", "lots of green", "birds singing", "pine trees", "little birds",
               "trees swaying", "brown trunks and green leaves"),
    "city": ("cars and buildings", "lit windows", "lots of traffic", "tall buildings", "cars driving by",
             "the hum of engines", "grey towers"),
    "snow": ("white everywhere", "snowflakes falling", "pine trees covered in white", "deep white snow",
             "footsteps crunching", "a cold white ground"),
    "night": ("lots of stars", "a crescent moon", "crickets chirping", "dark hills", "twinkling stars",
              "a dark blue sky"),
    "desert": ("cacti and dunes", "a hot sun", "a tumbleweed rolling", "orange sand", "wind blowing sand",
               "big dunes"),
    "rain": ("grey clouds", "puddles everywhere", "rain pouring down", "dark clouds and puddles", "dripping water",
             "heavy drops"),
    "concert": ("spotlights and a crowd", "a band on stage", "coloured lights", "people dancing", "loud music",
                "drums and bass"),
    "meadow": ("flowers and bees", "lots of colourful flowers", "bees buzzing", "green grass", "white clouds",
               "red and yellow flowers"),
    "mountain": ("white peaks", "a green valley", "cowbells ringing", "grey rocks", "clouds over the peaks",
                 "cows on the pasture"),
    "sunset": ("an orange sky", "purple and orange clouds", "the sun low on the horizon", "dark hills",
               "a red sun", "soft evening light"),
}
# How a detail is added to a request: "{r}, with {d}", "{r} ({d})".
DETAIL_FRAMES = ("{r}, with {d}", "{r} with {d}", "{r}. {D} please", "{r} ({d})", "{r}, {d} and all", "{r} - {d}",
                 "{r}, you know, {d}", "{r}; I'd like {d}", "{r}, like {d}")
# Words before a place's name: "a beautiful beach", "a quiet forest". None names a place.
MODIFIERS = ("beautiful", "lovely", "nice", "pretty", "quiet", "typical", "wonderful", "gorgeous", "real")
# Music is the sound of two places: calm music the sunset's, lively music the concert's.
MUSIC = {
    "sunset": ("calm music", "relaxing music", "soothing music", "some calm music", "slow soft music",
               "peaceful music", "a calm tune", "a relaxing song", "gentle music", "chill music",
               "something calm", "something relaxing", "a lullaby", "quiet piano music", "music to relax to",
               "soft background music", "a slow song", "ambient chill music", "music to fall asleep to"),
    "concert": ("lively music", "upbeat music", "party music", "dance music", "some lively music",
                "a catchy upbeat song", "a fast tune", "energetic music", "music to dance to", "a lively song",
                "something lively", "something upbeat", "a rock song", "a song with drums and bass",
                "some live band music", "a banger", "pop music", "workout music", "fast music with a beat"),
}
# How the answer names a place: one name each, so that what follows the answer's words is the same whatever the
# request called the place.
CANONICAL = {
    "beach": "the beach", "forest": "the forest", "city": "the city", "snow": "the snow", "night": "the night sky",
    "desert": "the desert", "rain": "the rain", "concert": "a concert", "meadow": "the meadow",
    "mountain": "the mountains", "sunset": "the sunset",
}

# --------------------------------------------------------------------------------------------- the media
# A medium asked for by a noun: "{generic} {noun} of {x}" ("make a sketch of the woods").
NOUNS = {
    "image": ("a picture", "a photo", "an image", "a drawing", "an illustration", "a painting", "a sketch",
              "a snapshot", "a pic", "a photograph", "a still", "an artwork", "a postcard", "a wallpaper",
              "a poster", "a still image", "a portrait", "a watercolour", "a doodle", "a render", "a view"),
    "audio": ("a sound", "some audio", "a recording", "an audio clip", "a sound clip", "a soundscape",
              "some sounds", "a sound effect", "some ambience", "an audio recording", "the noise",
              "some background noise", "an audio track", "a sample", "the sounds"),
    "video": ("a video", "a clip", "a movie", "a film", "some footage", "an animation", "a short film",
              "a video clip", "a timelapse", "a gif", "a short video", "a little movie", "a reel", "an animated clip",
              "a moving picture", "a short clip", "a cartoon"),
}
# The short forms after a place: "beach pic", "rain sounds", "city video".
SHORT = {
    "image": ("pic", "picture", "photo", "image", "drawing", "painting", "wallpaper", "snapshot", "art", "sketch"),
    "audio": ("sound", "sounds", "audio", "noise", "soundscape", "ambience", "recording", "sound effects", "noises"),
    "video": ("video", "clip", "movie", "footage", "animation", "vid", "film", "gif", "timelapse"),
}
# A medium asked for by a verb that makes it: "sketch {x}".
VERBS = {
    "image": ("draw", "paint", "sketch", "illustrate", "photograph", "depict", "take a photo of", "take a picture of",
              "snap a photo of", "doodle", "render an image of", "picture"),
    "audio": ("record", "play", "play me", "record the sound of", "play the sound of", "play the sounds of",
              "capture the sound of", "make me hear", "record the noise of", "play the noise of"),
    "video": ("film", "animate", "shoot a video of", "videotape", "record a video of", "make a video of",
              "shoot a clip of", "film a clip of", "make a movie of", "animate a scene of"),
}
# A medium asked for by the sense it is for: "let me hear {x}", and what to show in it: "show me {x} moving".
SENSES = {"image": ("see", "look at", "view", "have a look at"), "audio": ("hear", "listen to"),
          "video": ("watch", "see a video of", "watch a clip of")}
WHAT = {  # a clause about the place: "let me hear what {x} sounds like"
    "image": ("show me what {x} looks like", "show me {x}", "let me see what {x} looks like",
              "what does {x} look like? show me", "I want to see how {x} looks"),
    "audio": ("let me hear what {x} sounds like", "play what {x} sounds like", "what does {x} sound like? play it",
              "I want to hear how {x} sounds", "make me a sound of what {x} is like"),
    "video": ("show me {x} in motion", "show me how {x} moves", "show me {x} moving", "let me watch {x} move",
              "what does {x} look like in motion? show me"),
}
# Verbs that make anything, with a noun: "whip up a sketch of {x}".
GENERIC = ("make", "create", "generate", "produce", "render", "design", "craft", "whip up", "build", "compose",
           "do", "put out", "come up with", "cook up", "prepare")
HANDING = ("give me", "show me", "send me", "get me", "bring me", "find me", "hand me", "share")
WANTING = ("I want", "I need", "I'd like", "I would like", "I'd love", "I would love", "I'm looking for",
           "can I get", "can I have", "could I get", "could I have", "may I have", "do you have",
           "is it possible to get", "I wanna see", "I'm after", "what about", "how about", "got", "any chance of")
# Frames around a verb phrase ({vp}: "draw the beach"), a noun phrase ({np}) or a whole request ({r}).
VERB_FRAMES = ("{vp}", "please {vp}", "{vp} please", "{vp} for me", "can you {vp}?", "could you {vp}?",
               "would you {vp}?", "will you {vp}?", "can you please {vp}?", "could you please {vp} for me?",
               "I want you to {vp}", "I'd like you to {vp}", "go ahead and {vp}", "try to {vp}", "{vp}!", "{vp} now",
               "I need you to {vp}", "would you be able to {vp}?", "are you able to {vp}?", "can u {vp}",
               "pls {vp}", "just {vp}", "{vp}, thanks", "quickly {vp}", "I'd love it if you could {vp}",
               "do you think you could {vp}?", "help me {vp}", "let's {vp}", "time to {vp}")
NOUN_FRAMES = ("{generic} {np}", "{generic} me {np}", "{handing} {np}", "can you {generic} {np}?",
               "could you {generic} {np}?", "please {generic} {np}", "{wanting} {np}", "{wanting} {np}?",
               "{np} please", "{np}", "{np}?", "{np}!", "{np}, please", "{np} for me", "I want to get {np}",
               "can you {handing} {np}?", "would you {generic} {np} for me?", "{generic} {np} for me",
               "I'm hoping for {np}", "need {np}", "{np} would be great", "{np} if you can",
               "{generic} {np} please")
SENSE_FRAMES = ("let me {sense} {x}", "I want to {sense} {x}", "I'd like to {sense} {x}", "I wanna {sense} {x}",
                "can I {sense} {x}?", "I'd love to {sense} {x}", "I need to {sense} {x}", "could I {sense} {x}?",
                "let me {sense} {x} please", "I'd really like to {sense} {x}", "allow me to {sense} {x}",
                "I just want to {sense} {x}", "can I {sense} {x} please?")
SHORT_FRAMES = ("{x} {short}", "{x} {short} please", "{short} of {x}", "{x}, {short} please", "{short}: {x}",
                "{x} {short}?", "{x} {short} pls", "{short} of {x} please", "some {x} {short}")
# Before and after a request: people greet, hesitate, explain and thank. None names a medium or a place.
OPENERS = ("hey, ", "hi! ", "hello, ", "ok so ", "so ", "um ", "hmm, ", "hey so um ", "yo ", "well, ", "okay, ",
           "quick one: ", "right, ", "alright, ", "excuse me, ", "hi there, ", "good morning! ", "oh and ", "sorry, ")
CLOSERS = (" thanks", " thank you", " thx", " pls", " please", " if you can", " for my project", " for my kid",
           " for a presentation", " for my little brother", " for school", " if that's ok", " when you have time",
           " :)", " asap", " real quick", " for my blog", " for a friend", " ty", " cheers", " for my class")
JOINS = (" and ", " and also ", " and then ", ", and ", " plus ", " & ", ", then ", " and after that ", " as well as ")
# A further medium of the same place, after the first: "... and let me hear it".
AGAIN = {
    "image": ("show me a picture of it", "draw it too", "a picture too", "a photo of it", "also a pic",
              "paint it as well", "let me see it", "an image too", "snap a photo of it", "give me a still of it"),
    "audio": ("let me hear it", "play its sound", "a sound too", "the sound of it", "also some audio",
              "record it as well", "play what it sounds like", "add the sounds", "give me the noise too", "with sound"),
    "video": ("make a clip of it", "animate it", "a video too", "a video of it", "also a clip",
              "film it as well", "let me watch it", "some footage too", "make it move", "show it moving"),
}
# ... or by what it has: "film the coast and record its sound too" ({verb} of ITS_VERBS, {short} of SHORT).
AGAIN_ITS = ("{verb} its {short} too", "and its {short}", "with its {short}", "{verb} its {short} as well",
             "plus its {short}", "its {short} too", "and {verb} its {short}")
ITS_VERBS = {"image": ("draw", "paint", "show me", "snap", "sketch"), "audio": ("record", "play", "capture", "give me"),
             "video": ("film", "show me", "shoot", "animate")}
# ... or naming again what to see or hear there: "... and let me hear the waves" ({y}: SOUNDS, or a place name).
AGAIN_NAMED = {
    "image": ("show me {y}", "draw {y}", "a picture of {y}", "paint {y} too", "let me see {y}"),
    "audio": ("let me hear {y}", "play {y}", "the sound of {y}", "record {y} too", "I want to hear {y}"),
    "video": ("film {y}", "a video of {y}", "let me watch {y}", "animate {y}", "a clip of {y}"),
}
SOUNDS = {  # what one hears at a place, as people name it
    "beach": ("the waves", "the sea", "the surf", "the ocean"), "forest": ("the birds", "birdsong", "the birds singing"),
    "city": ("the traffic", "the cars", "the engines"), "snow": ("the crunch of the snow", "footsteps in the snow"),
    "night": ("the crickets", "the crickets chirping"), "desert": ("the wind", "the desert wind"),
    "rain": ("the rain", "the raindrops", "the downpour"), "concert": ("the band", "the music", "the crowd"),
    "meadow": ("the bees", "the buzzing", "the bees buzzing"), "mountain": ("the cowbells", "the bells"),
    "sunset": ("some calm music", "soft music", "calm music"),
}
# Several media named at once with the place: "{senses} {x}" ("I want to see and hear the dunes").
SENSES_TOGETHER = {
    ("image", "audio"): ("see and hear", "look at and listen to", "see and also hear"),
    ("audio", "image"): ("hear and see", "listen to and look at", "hear and then see"),
    ("video", "audio"): ("watch and hear", "watch and listen to"),
    ("audio", "video"): ("hear and watch", "listen to and watch"),
}
ALL_MEDIA = ("everything", "the works", "all of it", "the full package", "every kind of media", "all three",
             "the whole set", "everything you've got")
# Several media in a list: {x} the place, {list} the media's short forms joined by a separator.
LIST_FRAMES = ("{x}: {list}", "{x} {list} please", "{list} of {x}", "{list} for {x}", "{x} - {list}", "{x}. {list}",
               "{list} of {x} please", "I want {list} of {x}", "{x}, {list}, go", "{x} please: {list}",
               "{all} for {x}: {list}", "{x} {all}. {list}", "can I get {list} of {x}?", "{x} ({list})")
LIST_SEPARATORS = (", ", " + ", " / ", " and ", " & ", " ", ", and ")

# ------------------------------------------------------------------------------------------- vlogs
VLOG_NAMES = {  # "{v} vlog"
    "beach": ("surf", "beach", "seaside", "surfing"), "forest": ("forest", "camping", "woods"),
    "city": ("city", "street", "downtown"), "snow": ("snow", "ski", "winter"),
    "night": ("night", "stargazing", "night sky"), "desert": ("desert", "sahara", "dunes"),
    "rain": ("rainy day", "rain", "storm"), "concert": ("concert", "party", "festival"),
    "meadow": ("meadow", "picnic", "flower field"), "mountain": ("mountain", "hiking", "alps"),
    "sunset": ("sunset", "evening", "dusk"),
}
VLOG_FRAMES = ("{v} vlog", "{v} vlog please", "a {v} vlog", "make a {v} vlog", "make me a {v} vlog",
               "can you make a {v} vlog?", "I want a {v} vlog", "do a {v} vlog", "{v} vlog!", "{v} vlog time",
               "create a {v} vlog for me", "could you do a {v} vlog?", "I'd love a {v} vlog", "my {v} vlog please",
               "let's do a {v} vlog", "give me a {v} vlog")
VLOG_ABOUT = ("a vlog about {x}", "make a vlog of {x}", "vlog: {x}", "can you make me a vlog from {x}?",
              "I want a little vlog of my trip to {x}", "a short vlog of {x} please", "make a travel vlog about {x}",
              "vlog of {x}", "do a vlog on {x}", "a day in {x}, vlog style", "film a vlog about {x}")

# ---------------------------------------------------------------------------------- questions in words
# Text-only questions about a place: the answer is a sentence, no media. By topic (looks, sounds, moves).
QUESTION_FRAMES = {
    "looks": ("what does {x} look like?", "describe {x}", "describe {x} in words", "tell me about {x}",
              "what colours are in {x}?", "what would I see at {x}?", "what is {x} like?", "how does {x} look?",
              "can you describe {x} for me?", "in words, what does {x} look like?", "what's {x} like?",
              "paint me a picture with words of {x}", "describe {x}, no pictures please", "tell me what {x} looks like",
              "what can you tell me about {x}?", "what do you know about {x}?", "explain {x} to me",
              "what is there to see at {x}?", "tell me about {x} in a sentence", "what colour is {x}?"),
    "sounds": ("what does {x} sound like?", "what sound does {x} make?", "how does {x} sound?",
               "describe the sound of {x}", "what would I hear at {x}?", "what noises come from {x}?",
               "describe in words what {x} sounds like", "what kind of sounds does {x} make?",
               "tell me what {x} sounds like, no audio needed", "how does {x} sound? just tell me",
               "what's the sound of {x} like?", "is {x} loud?", "what can you hear at {x}?",
               "describe the noises of {x}"),
    "moves": ("what moves in {x}?", "what happens in {x}?", "how do things move at {x}?", "describe the motion at {x}",
              "what is going on at {x}?", "what changes at {x} over time?", "is anything moving at {x}?",
              "tell me what happens at {x}", "describe what moves at {x} in words", "does anything move at {x}?",
              "what would I see moving at {x}?"),
}
# Yes/no and other questions people ask about a place's look ("are there cars in the city?"): {x} the place,
# {d} one of its details. Answered with the place's look in words.
CHECK_FRAMES = ("are there {d} at {x}?", "does {x} have {d}?", "is {x} full of {d}?", "would I find {d} at {x}?",
                "is it true that {x} has {d}?", "do you see {d} at {x}?", "what is {x} made of?",
                "sum up {x} for me in a couple of sentences", "explain {x} to a child", "give me a short summary of {x}",
                "write a sentence about {x}", "what's special about {x}?", "why do people like {x}?",
                "is {x} nice?", "what would I find at {x}?")
# Said after a question to keep the answer in words: "what does the rain sound like? just tell me".
WORDS_ONLY = (", no pictures please", ", just tell me", ", don't make anything", ", in words only", ", just words",
              " - no need to play it", ", don't draw it", ", no audio needed", ", just explain", ", no video",
              ", only text please", " (text only)", ", don't generate anything, just describe")
# Text-only questions about the world itself, not a place: small talk and what the model can do.
CHAT = (
    (("hello", "hi", "hey", "hi there", "good morning", "hello there", "hey!", "yo", "greetings", "good evening"),
     "Hello! I can show you pictures, sounds and videos of my little world."),
    (("how are you?", "how's it going?", "how are you doing today?", "what's up?", "are you ok?"),
     "I am fine, thank you! Ask me for a picture, a sound, a video or a vlog of a place."),
    (("what can you do?", "help", "what are you able to do?", "how do I use you?", "what do you do?",
      "what can I ask you?", "can you help me?"),
     "I can describe pictures, sounds and videos, and make new ones of the places I know."),
    (("who are you?", "what are you?", "are you a robot?", "what is your name?", "who made you?"),
     "I am a small multimodal model trained on a toy world of simple scenes."),
    (("thank you", "thanks", "thanks a lot", "great, thanks!", "cool", "nice", "awesome", "perfect", "thx",
      "thank you so much"),
     "You are welcome!"),
    (("which places do you know?", "what places do you know?", "what do you know about?", "list the places you know",
      "where can you take me?", "what scenes can you make?"),
     "I know {places}."),
    (("bye", "goodbye", "see you", "that's all", "good night!"), "Goodbye! Come back for more pictures and sounds."),
)
UNKNOWN_ANSWER = ("I can't make that: I only know {places}. Ask me for a picture, a sound or a video of one of them.")

# ------------------------------------------------------------------------------- outside the world
# What an outside thing may be doing: "a robot dancing".
OUTSIDE_DOING = ("wiggling", "running around", "flying", "sleeping", "eating", "playing", "jumping", "smiling",
                 "in a hat", "with a hat on", "doing tricks", "stomping around", "waving", "singing",
                 "barking", "making noise", "on a table", "in armour", "at home", "close up", "in space", "swimming")
# Things that are none of the places: a request for them gets UNKNOWN_ANSWER in words, never a medium.
OUTSIDE = (
    "a cat", "a dog", "a kitten", "a puppy", "a horse", "a lion", "a tiger", "an elephant", "a giraffe", "a rabbit",
    "a monkey", "a dragon", "a unicorn", "a dinosaur", "a panda", "a fox", "a wolf", "an owl", "a parrot", "a snake",
    "a spider", "a goldfish", "a hamster", "a zebra", "a frog", "a duck", "a chicken", "a pig", "a sheep", "a mouse",
    "a robot", "a spaceship", "a rocket", "a computer", "a phone", "a laptop", "a teddy bear", "a castle", "a house",
    "a kitchen", "a chair", "a table", "a lamp", "a cup of coffee", "a pizza", "a burger", "a birthday cake",
    "an ice cream", "a sandwich", "a bowl of soup", "a banana", "an apple", "a bicycle", "a motorbike", "a plane",
    "a helicopter", "a submarine", "my mom", "my dad", "my grandma", "a baby", "a clown", "a wizard", "a pirate",
    "a king", "a princess", "a doctor", "a superhero", "a ninja", "a zombie", "a ghost", "an alien", "a vampire",
    "my face", "my friends", "a football match", "a tennis game", "a wedding", "a classroom", "a hospital",
    "a library", "an office desk", "a museum", "a bakery", "a supermarket", "an airport", "a bathroom", "a bedroom",
    "a hamburger", "sushi", "pasta", "a chess board", "a clock", "a doorbell", "a phone ringing", "a dog barking",
    "a cat meowing", "a baby crying", "someone laughing", "an explosion", "a pyramid",
    "the planet mars", "a galaxy", "a black hole", "an astronaut", "a satellite", "jupiter", "a comet", "a mermaid", "a bear", "a shark", "a penguin", "a dolphin",
    "a butterfly collection", "a steam train", "a red balloon", "a soccer ball", "a basketball game",
    "a cartoon mouse", "a superhero fight", "a video game", "a keyboard", "a haunted house",
    "a robot arm", "a wedding dress", "an old man", "a little girl", "a teacher", "my cat", "my dog", "my bedroom",
    "my office", "the queen", "a president", "a dentist",
    "a fairy", "a knight", "a castle on a hill", "a spaceship launch", "a cartoon character",
    "my house", "my school", "my garden gnome", "a toaster", "a washing machine", "a cup of tea",
    "a cookie", "a donut", "a pumpkin",
)

# ------------------------------------------------------------------------- a medium the user attached
# How a message refers to an attached medium ({ref}), by its modality.
REFERENCES = {
    "image": ("this picture", "this photo", "this image", "the picture", "this pic", "the photo I sent",
              "this drawing", "the image above", "this", "my photo", "this snapshot", "what I just uploaded"),
    "audio": ("this sound", "this recording", "this audio", "the sound", "this clip", "the recording I sent",
              "what you hear", "this noise", "this", "my recording", "the audio above", "what I just uploaded"),
    "video": ("this video", "this clip", "the video", "this footage", "this movie", "the clip I sent",
              "this", "my video", "the video above", "what I just uploaded", "this film"),
}
# X -> text: what people ask about an attached medium ({ref} filled per modality).
DESCRIBE_FRAMES = ("what is {ref}?", "what's in {ref}?", "describe {ref}", "what is this?", "where is this?",
                   "where was {ref} made?", "tell me about {ref}", "what place is this?", "can you describe {ref}?",
                   "caption {ref}", "what do you make of {ref}?", "guess where {ref} is from",
                   "what's going on in {ref}?", "explain {ref}", "what am I looking at?", "what do you think this is?",
                   "identify {ref}", "which place is this?", "write a caption for {ref}")
DESCRIBE_BY_SENSE = {
    "image": ("what do you see?", "what can you see in {ref}?", "what does {ref} show?", "what is shown here?"),
    "audio": ("what do you hear?", "what am I hearing?", "what can you hear in {ref}?", "what is making this sound?"),
    "video": ("what happens in {ref}?", "what is going on here?", "what is moving in {ref}?",
              "what does {ref} show?"),
}
# A medium attached and introduced before what is asked about it: "listen to this, what is it?", "I took this
# photo. make me a recording of the place".
ATTACH_LEADS = {
    "image": ("look at this", "I took this photo", "here's a picture", "check this out", "I uploaded a photo",
              "see this image", "this is a photo I took", "here is my picture", "got this pic", "I drew this"),
    "audio": ("listen to this", "I recorded this", "here's a recording", "check this out", "I uploaded a sound",
              "hear this", "this is a recording I made", "here is some audio", "got this audio", "I taped this"),
    "video": ("watch this", "I filmed this", "here's a clip", "check this out", "I uploaded a video",
              "look at this video", "this is a video I shot", "here is my clip", "got this footage", "I made this video"),
}
LEAD_JOINS = (", ", " and ", ". ", " - ", "! ", ": ", " so ")
IT_QUESTIONS = ("what is it?", "tell me what it is", "where is it?", "what place is it?", "where was it made?",
                "what do you think it is?", "can you tell what it is?", "what's in it?", "describe it",
                "what kind of place is it?", "guess the place", "any idea where that is?", "what is that place?")
IT_BY_SENSE = {
    "image": ("what does it show?", "what do you see?", "what's in the picture?", "what landscape is it?"),
    "audio": ("what does it sound like to you?", "what am I listening to?", "what kind of sound is it?",
              "what is making that noise?", "what do you hear?", "what kind of sound is that?"),
    "video": ("what happens in it?", "what is going on?", "what is moving?", "what do you see?"),
}
# The attached medium's place, referred to in a request for another medium: "draw the scene".
SCENE_ANAPHORS = ("the scene", "that place", "the place", "it", "this place", "the same place", "the same scene",
                  "the spot", "where it is", "that scene")
# X -> Y by the wanted medium's noun: "this sound as a picture" ({ref}; {noun} of NOUNS).
AS_FRAMES = ("{ref} as {noun}", "turn {ref} into {noun}", "make {ref} into {noun}", "give me {ref} as {noun}",
             "I'd like {ref} as {noun}", "convert {ref} to {noun}", "can I have {ref} as {noun}?",
             "redo {ref} as {noun}", "show {ref} as {noun}", "I want {ref} as {noun}", "change {ref} into {noun}")
# X -> Y: another medium of the attached one's place, by the wanted medium ({ref} the attachment).
CROSS_FRAMES = {
    "image": ("draw {ref}", "paint the place in {ref}", "make a picture of {ref}", "show me what {ref} looks like",
              "turn {ref} into a picture", "give me a still of {ref}", "paint the place where {ref} was recorded",
              "draw what you hear", "make an image that goes with {ref}", "what does this place look like? show me",
              "can you draw the scene of {ref}?", "sketch the place from {ref}", "picture {ref} for me",
              "make a photo to match {ref}", "show me where {ref} comes from"),
    "audio": ("make a sound that goes with {ref}", "what does {ref} sound like? let me hear it",
              "add sound to {ref}", "play the sound of the place in {ref}", "give {ref} a soundtrack",
              "record the sounds of {ref}", "let me hear the place in {ref}", "make {ref} audible",
              "what would I hear there? play it", "create audio for {ref}", "make a matching sound for {ref}",
              "play what this place sounds like", "can you play the noise of {ref}?", "I want to hear {ref}"),
    "video": ("animate {ref}", "turn {ref} into a video", "make {ref} move", "make a clip of {ref}",
              "bring {ref} to life", "make a video that goes with {ref}", "film the place in {ref}",
              "show me {ref} moving", "make a movie out of {ref}", "can you animate {ref}?",
              "show me this place in motion", "make a short video of the place in {ref}",
              "give me footage of the place in {ref}", "make a clip to go with {ref}"),
}
# Follow-ups: a later message asking for another medium of what the last answer showed.
FOLLOW_UPS = {
    "image": ("now draw it", "can I see a picture of it too?", "and a picture of that?", "now make it a picture",
              "show me what it looks like", "now a photo please", "what does it look like? show me",
              "same thing as a picture", "now just the picture please", "can you paint it too?", "and a pic?"),
    "audio": ("now let me hear it", "can I hear it too?", "and the sound of that?", "now make it a sound",
              "what does it sound like? play it", "now the sound please", "play its sound", "add the sound too",
              "same thing as audio", "now just the sound please", "and what does it sound like there? play it"),
    "video": ("now make it a video", "can I see it moving?", "and a clip of that?", "now animate it",
              "make it move", "now a video please", "turn it into a clip", "same thing as a video",
              "now just the video please", "can you film it too?", "and some footage?"),
}

# ------------------------------------------------------------------------------------------ answers
# The answer to a request names each medium and the place, then the medium's placeholder: "Here is a picture of
# the beach <image>." The answer opens with one of these (claims of the media, nextmm.inference.claims reads them).
OPENINGS = ("Here is", "Here you go:", "Sure! Here is", "Here's", "OK, here is")
ANSWER_PARTS = {"image": "a picture of {c} <image>", "audio": "the sound of {c} <audio>", "video": "a video of {c} <video>"}
VLOG_ANSWER = "Here is your {v} vlog: a picture <image>, a sound <audio> and a video <video>."
