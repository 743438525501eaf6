"""prompt_format=nextgpt: the token ids the LLM reads equal the original NExT-GPT's training format.

The expected sequences are written down from the original's code (NExT-GPT-Lagacy/code/; "prompt_wrap" is
model/anyToImageVideoAudio.py NextGPTModel.prompt_wrap, "stage_3" is model/common/utils.py
build_one_instance_stage_3) and its tokenizer, transformers 4.29.2's slow LlamaTokenizer: the text is cut at
each added token, the whitespace on both sides of it dropped (tokenization_utils.py PreTrainedTokenizer.tokenize,
"We strip left and right by default"), every remaining piece encoded by sentencepiece with its "▁" in front.
Written over the tiny vocabulary of tests/fixtures/llama_tokenizer.py; they were also checked once against
transformers 4.29.2 and sentencepiece 0.2 running that code on the same vocabulary as a sentencepiece model.

Notation: tokens separated by spaces, "|" where the original makes a new tokenizer call (no token), "<medium>" the
projected medium, a trailing "*" a training target (stage_3 puts the answers' ids into target_ids).
"""

import pytest
import torch

from fixtures.llama_tokenizer import OFFICIAL_ADDED, tiny_llama_tokenizer, write_tiny_llama_tokenizer
from nextmm.data.dataset import ConversationDataset
from nextmm.data.records import OutputRef, Record, Turn
from nextmm.errors import ConfigError
from nextmm.config import load_model_config
from nextmm.inference.prompt import (
    Media,
    Message,
    encode_segments,
    prompt_segments,
    slow_llama_ids,
)
from nextmm.model import IGNORE_INDEX, MEDIA_POSITION, NextMM

SIGNALS = {"image": 4, "audio": 8, "video": 24}
IMG = "[IMG0] [IMG1] [IMG2] [IMG3]"
AUD = " ".join(f"[AUD{i}]" for i in range(8))

EXPECTED = {
    # prompt_wrap, no media: BOS, then p_before = '### Human: ' alone (its space is a "▁" of its own); stage_3 turn 0,
    # input_modality text: value + '\n### Assistant: '
    "text_only": "<s> | ▁### ▁Human : ▁ | ▁What ▁is ▁this ? <0x0A> ## # ▁Assistant : ▁",
    # prompt_wrap with img_embeds: p_before = '### Human: <Img>' in one call (the space before <Img> is dropped),
    # the medium, then stage_3 turn 0: '</Img> ' + value + '\n### Assistant: '
    "one_medium": "<s> | ▁### ▁Human : <Img> | <medium> | </Img> ▁What ▁is ▁this ? <0x0A> ## # ▁Assistant : ▁",
    # the original trained one medium per sample; nextmm puts each further one the same way: '</Img> <Img>' reads
    # </Img> <Img> (the space between two added tokens is dropped)
    "several_media": "<s> | ▁### ▁Human : <Img> | <medium> | </Img> <Img> | <medium> | </Img> ▁What ▁is ▁this ? "
                     "<0x0A> ## # ▁Assistant : ▁",
    # stage_3 gpt turn: value + '\n###' (targets); later human turn: 'Human: ' + value + '\n### Assistant: ', so
    # the answer's "\n###" and "▁Human" join the turns, with no further "\n" or "###"
    "second_turn": "<s> | ▁### ▁Human : <Img> | <medium> | </Img> ▁What ▁is ▁this ? <0x0A> ## # ▁Assistant : ▁ | "
                   "▁A* ▁beach* .* <0x0A>* ##* #* | ▁Human : ▁Make ▁a ▁picture ▁of ▁it . <0x0A> ## # ▁Assistant : ▁",
    # stage_3 gpt turn with output_modality image: value + ' '.join([IMG0..3]) + '\n###'; the newline after [IMG3]
    # is dropped, so "###" is encoded alone: "▁###"
    "third_turn": "<s> | ▁### ▁Human : ▁ | ▁What ▁is ▁this ? <0x0A> ## # ▁Assistant : ▁ | "
                  "▁A* ▁beach* .* <0x0A>* ##* #* | ▁Human : ▁Make ▁a ▁picture ▁of ▁it . <0x0A> ## # ▁Assistant : ▁ | "
                  "▁Here* ▁is* ▁a* ▁picture* .* [IMG0]* [IMG1]* [IMG2]* [IMG3]* ▁###* | "
                  "▁Human : ▁Now ▁a ▁sound . <0x0A> ## # ▁Assistant : ▁",
    # a training answer with two signal runs inside its text: the spaces around each run are dropped; " ." after
    # [AUD7] is encoded as ".": "▁" "." (this vocabulary has no "▁.")
    "signal_answer": "<s> | ▁### ▁Human : ▁ | ▁Make ▁a ▁picture ▁of ▁the ▁sea ▁and ▁it s ▁sound . <0x0A> ## # "
                     "▁Assistant : ▁ | ▁Here* ▁is* ▁the* ▁sea* [IMG0]* [IMG1]* [IMG2]* [IMG3]* ▁and* ▁it* s* ▁sound* "
                     + " ".join(f"[AUD{i}]*" for i in range(8)) + " ▁* .* <0x0A>* ##* #*",
}


def user(text: str, *modalities: str) -> Message:
    """A question with media as precomputed ImageBind features (the tiny encoder's 32 dimensions)."""
    return Message("user", text, [Media(m, torch.zeros(32), encoded=True) for m in modalities])


def assistant(text: str) -> Message:
    return Message("assistant", text)


SIGNAL_RUN = {"image": "".join(IMG.split()), "audio": "".join(AUD.split())}  # as nextmm's decoding leaves them
CONVERSATIONS = {
    "text_only": [user("What is this?")],
    "one_medium": [user("What is this?", "image")],
    "several_media": [user("What is this?", "image", "audio")],
    "second_turn": [user("What is this?", "image"), assistant("A beach."), user("Make a picture of it.")],
    "third_turn": [user("What is this?"), assistant("A beach."), user("Make a picture of it."),
                   assistant("Here is a picture." + SIGNAL_RUN["image"]), user("Now a sound.")],
    "signal_answer": [user("Make a picture of the sea and its sound."),
                      assistant(f"Here is the sea {SIGNAL_RUN['image']} and its sound {SIGNAL_RUN['audio']} .")],
}


def expected(name: str) -> list[tuple[str, bool]]:
    """(token, is a target) of a table above."""
    return [(token.rstrip("*"), token.endswith("*")) for token in EXPECTED[name].split() if token != "|"]


def read(model, ids, labels=None) -> list[tuple[str, bool]]:
    tokens = ["<medium>" if i == MEDIA_POSITION else model.tokenizer.convert_ids_to_tokens(i) for i in ids]
    return list(zip(tokens, [label != IGNORE_INDEX for label in labels] if labels is not None else [False] * len(ids)))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The tiny model with the release's tokenizer format and the original's prompt format."""
    folder = write_tiny_llama_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    return NextMM.from_config("tiny", overrides=["prompt_format=nextgpt", f"llm.tokenizer={folder}"])


@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_llm_reads_the_original_training_format(model, name):
    segments = prompt_segments(CONVERSATIONS[name], train_answers=True, prompt_format=model.prompt_format)
    assert read(model, *model.encode(segments)) == expected(name)


def test_embedded_batch_carries_the_same_ids(model):
    segments = prompt_segments(CONVERSATIONS["one_medium"], prompt_format=model.prompt_format)
    batch = model.embed_segments([segments])
    assert read(model, batch.token_ids[0].tolist()) == [(t, False) for t, _ in expected("one_medium")]


def test_a_conversation_turn_feeds_the_llm_the_original_format(model, monkeypatch):
    """The third turn of a chat, its history as Conversation keeps it: the prompt is the table's, answer-free."""
    seen = []
    embed = model.embed_segments
    monkeypatch.setattr(model, "embed_segments", lambda batch: seen.append(embed(batch)) or seen[-1])
    chat = model.conversation(max_new_tokens=1, render=False, keep_claims=False, progress=False)
    chat.messages = list(CONVERSATIONS["third_turn"][:-1])
    chat.say("Now a sound.")
    assert read(model, seen[0].token_ids[0].tolist()) == [(t, False) for t, _ in expected("third_turn")]


def test_training_targets_follow_the_original(model):
    """A stage-3 sample whose answer produces an image and a sound: the dataset's segments, ids and labels."""
    record = Record("t2m.json#0", [
        Turn("user", "Make a picture of the sea and its sound."),
        Turn("assistant", "Here is the sea <image> and its sound <audio>.",
             outputs=[OutputRef("image", "the sea"), OutputRef("audio", "waves")]),
    ])
    data = ConversationDataset([record], tokenizer=model.tokenizer, signal_counts=SIGNALS, max_length=512,
                               prompt_format=model.prompt_format)
    example = data[0]
    ids, labels = model.encode(example.segments)
    assert read(model, ids, labels) == expected("signal_answer")
    assert example.num_tokens == len(ids)


def test_the_original_tokenizer_drops_spaces_and_newlines_next_to_added_tokens():
    tokenizer = tiny_llama_tokenizer()
    tokens = tokenizer.convert_ids_to_tokens(slow_llama_ids(tokenizer, "a picture [IMG3]\n###", OFFICIAL_ADDED))
    assert tokens == ["▁a", "▁picture", "[IMG3]", "▁###"]
    # sentencepiece's "▁" comes in front of a piece that starts with a space too
    assert tokenizer.convert_ids_to_tokens(slow_llama_ids(tokenizer, " .", OFFICIAL_ADDED)) == ["▁", "▁", "."]


def test_the_formats_differ_and_the_config_chooses(model):
    """nextmm's own format (toyworld, tiny) keeps "▁" before <Img> and "\\n### Human: " between turns."""
    segments = prompt_segments(CONVERSATIONS["second_turn"], prompt_format="nextmm")
    tokens = [t for t, _ in read(model, *encode_segments(model.tokenizer, segments, "nextmm", OFFICIAL_ADDED))]
    assert tokens[:7] == ["<s>", "▁###", "▁Human", ":", "▁", "<Img>", "<medium>"]
    assert [load_model_config(name).prompt_format for name in ("nextgpt_7b", "toyworld", "tiny")] == [
        "nextgpt", "nextmm", "nextmm"]
    assert NextMM.from_config("tiny", empty=True).prompt_format == "nextmm"
    with pytest.raises(ConfigError, match="prompt_format='vicuna'"):
        NextMM.from_config("tiny", overrides=["prompt_format=vicuna"], empty=True)
