"""One turn of any-to-any generation, and the conversation that keeps turns together.

A turn is a numbered sequence of plain steps:
    1. encode: the conversation (text and media) becomes LLM input embeddings
    2. think: the LLM generates with its KV cache; signal runs are completed as they start, and a hook on its final
       norm keeps each step's last-layer state (not every layer's at every step)
    3. collect: last-layer states of every generated token, from generation plus one cached forward
    4. project: each signal run's states -> its decoder's conditioning
    5. decode: the diffusion decoders render the media (skipped with render=False)
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
    StopStringCriteria,
)

from nextmm.checks import check, number, whole
from nextmm.errors import ConfigError, MediaError, Stopped, UserError
from nextmm.inference.claims import claimed_media
from nextmm.inference.prompt import (
    TURN_END,
    Media,
    Message,
    prompt_segments,
    tidy_spaces,
)
from nextmm.inference.signals import find_signal_spans, next_signal_token
from nextmm.modality import MODALITIES, check_modality
from nextmm.parts.llm import decoding_cache, decoding_compile_config, final_norm, token_rows_written_in
from nextmm.parts.preprocess import audio_tensor, image_tensor, load_media, video_tensor

log = logging.getLogger(__name__)


# Sizes a turn may ask for: beyond them a decoder would allocate more than any machine holds.
MAX_SIDE = 4096
MAX_FRAMES = 512
MAX_AUDIO_SECONDS = 600


@dataclass
class GenerationSettings:
    """Knobs of a turn. ``None`` sizes and steps fall back to the decoder's config."""

    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    num_inference_steps: int | None = None
    guidance_scale: float | None = None  # None: the decoder config's guidance_scale, else 7.5
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    audio_seconds: float | None = None
    outputs: Sequence[str] | None = None  # None: the model decides; else these modalities are produced
    seed: int = 0
    progress: bool = True
    render: bool = True  # False: stop after the LLM, no diffusion; Turn.signals still names what it asked for
    keep_claims: bool = True  # produce every medium the answer's words hand over ("Here is a sound ...": nextmm.inference.claims)

    def updated(self, **changes) -> GenerationSettings:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown generation settings {sorted(unknown)}; known are {sorted(known)}")
        settings = replace(self, **changes)
        settings.check()
        return settings

    def check(self) -> None:
        """Every value in range, else a ConfigError naming it (before any model work). None means the decoder's."""
        rules = {
            "seed": (whole(0, 2**32 - 1), "a whole number from 0 to 2**32 - 1"),
            "max_new_tokens": (whole(1, 1_000_000), "a whole number of tokens >= 1"),
            "temperature": (lambda v: number(v) and v >= 0, "0 (greedy) or more"),
            "top_p": (lambda v: number(v) and 0 < v <= 1, "a number in (0, 1]"),
            "num_inference_steps": (whole(1, 1000), "a whole number of denoising steps from 1 to 1000, or null for "
                                    "the decoder's"),
            "guidance_scale": (lambda v: number(v) and v >= 0,
                               "0 or more (1 or less turns classifier-free guidance off), or null for the decoder's"),
            "height": (whole(1, MAX_SIDE), f"a whole number of pixels up to {MAX_SIDE}, or null"),
            "width": (whole(1, MAX_SIDE), f"a whole number of pixels up to {MAX_SIDE}, or null"),
            "num_frames": (whole(1, MAX_FRAMES), f"a whole number of frames from 1 to {MAX_FRAMES}, or null"),
            "audio_seconds": (lambda v: number(v) and 0 < v <= MAX_AUDIO_SECONDS,
                              f"seconds above 0, up to {MAX_AUDIO_SECONDS}, or null"),
        }
        check({name: getattr(self, name) for name in rules}, rules,
              required=("seed", "max_new_tokens", "temperature", "top_p"))
        if isinstance(self.outputs, str):
            raise ConfigError(f"outputs={self.outputs!r}: give a list, e.g. outputs=[{self.outputs!r}]")
        for modality in self.outputs or ():
            if modality not in MODALITIES:
                raise ConfigError(f"outputs has {modality!r}: give a list of {', '.join(MODALITIES)}, or null")


@dataclass
class Turn:
    """What one turn produced. ``outputs`` lists (modality, index) in the order the answer gave them."""

    text: str
    raw_text: str  # with the signal tokens, as generated
    images: list[Image.Image] = field(default_factory=list)
    audios: list[np.ndarray] = field(default_factory=list)  # float32 (samples,) at sample_rate
    videos: list[np.ndarray] = field(default_factory=list)  # uint8 (F, H, W, 3)
    outputs: list[tuple[str, int]] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)  # the modality of each complete signal run, rendered or not
    forced: list[str] = field(default_factory=list)  # modalities whose runs generation appended: asked for with
    # ``outputs`` or claimed in words (keep_claims), where the LLM wrote no signal tokens for them
    sample_rate: int = 16000
    fps: int = 8
    timings_s: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0  # positions the LLM read, each medium's embedding counted as one
    completion_tokens: int = 0  # tokens it wrote, signal tokens included
    settings: dict = field(default_factory=dict)  # every setting the turn ran with; each decoder's steps, guidance

    def media(self, modality: str) -> list:
        return {"image": self.images, "audio": self.audios, "video": self.videos}[modality]


class SignalCompletion(LogitsProcessor):
    """Once a modality's first signal token is generated, force the rest of its run in order; a signal
    token out of order is never sampled. Generated runs are therefore complete unless the token budget
    ends inside one (the caller completes those).

    As only the token before it can start or continue a run (the others are banned), the forced token is a lookup
    of each row's last token, done on the device: no step waits for the GPU to hand the ids over."""

    def __init__(self, signal_ids: dict[str, list[int]]):
        self.follows = {run[k]: run[k + 1] for run in signal_ids.values() for k in range(len(run) - 1)}
        self.banned = torch.tensor([i for ids in signal_ids.values() for i in ids[1:]])
        self.next_of: torch.Tensor | None = None  # (V,): the id forced after each id, -1 for none

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.banned.to(scores.device)] = -float("inf")
        if input_ids.shape[1] == 0:
            return scores
        if self.next_of is None or self.next_of.shape[0] != scores.shape[1] or self.next_of.device != scores.device:
            self.next_of = torch.full((scores.shape[1],), -1, dtype=torch.long)
            self.next_of[list(self.follows)] = torch.tensor(list(self.follows.values()))
            self.next_of = self.next_of.to(scores.device)
        forced = self.next_of[input_ids[:, -1]]  # (B,)
        only_forced = torch.full_like(scores, -float("inf")).scatter_(1, forced.clamp(min=0)[:, None], 0.0)
        return torch.where((forced >= 0)[:, None], only_forced, scores)


class LastLayerStates:
    """While active, keeps the LLM's last-layer state (B, H) at the last position of each forward: the final norm's
    output, which is what ``hidden_states[-1][:, -1]`` holds with ``output_hidden_states=True``, without generate
    keeping every layer's states at every step. Entry i is the state of the token read at step i (i = 0: the
    prompt's last)."""

    def __init__(self, llm: torch.nn.Module):
        self.norm = final_norm(llm)
        self.steps: list[torch.Tensor] = []

    def __enter__(self) -> LastLayerStates:
        self.handle = self.norm.register_forward_hook(self._record)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

    @torch.compiler.disable  # runs outside a compiled step, so the copy is taken before a CUDA graph reuses its output
    def _record(self, module, inputs, output: torch.Tensor) -> None:
        self.steps.append(output[:, -1].clone())  # (B, T, H) -> (B, H)


class SuppressedTokens(LogitsProcessor):
    """The LLM's ``generation_config.suppress_tokens`` (a toy LLM's tokens outside its training text) never
    sampled: their scores set to -inf through a mask built once per LLM. transformers' own processor does the same
    with a mask rebuilt at every step from the id list, which for toyworld's ~31,000 ids is a large share of a step.
    ``for_llm`` gives None when the LLM suppresses nothing (Vicuna)."""

    def __init__(self, mask: torch.Tensor):
        self.mask = mask  # (V,) bool

    @classmethod
    def for_llm(cls, llm: torch.nn.Module) -> SuppressedTokens | None:
        ids = llm.generation_config.suppress_tokens
        if not ids:
            return None
        cached = getattr(llm, "_nextmm_suppressed", None)
        if cached is None or cached[0] != tuple(ids):
            mask = torch.zeros(llm.get_output_embeddings().weight.shape[0], dtype=torch.bool)
            mask[torch.as_tensor(list(ids))] = True
            cached = (tuple(ids), mask)
            llm._nextmm_suppressed = cached
        return cls(cached[1])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.mask.device != scores.device:
            self.mask = self.mask.to(scores.device)
        return torch.where(self.mask[: scores.shape[-1]], -float("inf"), scores)


class _Progress(LogitsProcessor):
    """Advances a tqdm bar once per generated token (called once per decoding step)."""

    def __init__(self, bar: tqdm):
        self.bar = bar

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.bar.update(1)
        return scores


def to_media(modality: str, item) -> Media:
    """A path, or in-memory media: a PIL image; (waveform, sample_rate); (frames (F,H,W,3), fps)."""
    check_modality(modality)
    if isinstance(item, (str, Path)):
        return Media(modality, load_media(modality, item))
    try:  # in-memory media: their problems are the user's, in one line
        if modality == "image" and isinstance(item, Image.Image):
            return Media(modality, image_tensor(item.convert("RGB")))
        if modality in ("audio", "video") and isinstance(item, tuple) and len(item) == 2:
            convert = audio_tensor if modality == "audio" else video_tensor
            return Media(modality, convert(*item))
    except ValueError as error:
        raise MediaError(f"{modality} input: {error}") from None
    if isinstance(item, Media):
        return item
    expected = {"image": "a path or a PIL image", "audio": "a path or (waveform, sample_rate)",
                "video": "a path or (frames, fps)"}[modality]
    raise UserError(f"cannot read {modality} input of type {type(item).__name__}: give {expected}")


@functools.lru_cache(maxsize=4)
def _turn_end(tokenizer) -> StopStringCriteria:
    """Stops a row at the turn-end marker, however its tokens spell it. Built once per tokenizer: building it
    reads the whole vocabulary (0.6 s for LLaMA's 32000 tokens), which generate(stop_strings=) did every turn."""
    return StopStringCriteria(tokenizer, [TURN_END.strip()])


class _StopWhenSet(StoppingCriteria):
    def __init__(self, stop: threading.Event):
        self.stop = stop

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.stop.is_set(), dtype=torch.bool, device=input_ids.device)


def generate_turn(model, messages: list[Message], settings: GenerationSettings,
                  stop: threading.Event | None = None) -> Turn:
    """Answer the last user message of ``messages``: text plus whatever media the answer calls for.

    ``stop`` (set from another thread, e.g. a server whose client gave up) ends the turn at its next token or
    denoising step with nextmm.errors.Stopped."""
    return generate_turns(model, [messages], settings, stop)[0]


@torch.no_grad()
def generate_turns(model, conversations: Sequence[list[Message]], settings: GenerationSettings,
                   stop: threading.Event | None = None) -> list[Turn]:
    """Answer the last user message of each conversation, all with the same settings: the batch shares one LLM
    pass (left-padded) and one diffusion batch per modality, rendered in the order the answers first call for
    them. Each conversation draws its diffusion noise from its own generator seeded with ``settings.seed``, so
    its media are those of its own turn when it calls for its media in that order too (greedy text is the
    same); with temperature > 0 the LLM samples the whole batch from one stream. A batch of one is
    ``generate_turn``. The timings of each turn are the batch's."""
    for modality in settings.outputs or ():
        check_modality(modality)
    with token_rows_written_in(model.llm):
        return _generate_turns(model, conversations, settings, stop)


def _generate_turns(model, conversations: Sequence[list[Message]], settings: GenerationSettings,
                    stop: threading.Event | None) -> list[Turn]:
    timings: dict[str, float] = {}
    torch.manual_seed(settings.seed)

    # 1. encode
    start = time.perf_counter()
    batch = model.embed_segments([prompt_segments(messages, prompt_format=model.prompt_format)
                                  for messages in conversations])
    prompt_lengths = batch.attention_mask.sum(dim=1).tolist()
    inputs_embeds, attention_mask = _left_padded(batch.inputs_embeds, batch.attention_mask)  # (B, T, H), (B, T)
    max_new_tokens = _token_budget(model, inputs_embeds.shape[1], settings.max_new_tokens)
    timings["encode"] = time.perf_counter() - start

    # 2. think
    start = time.perf_counter()
    longest_run = max(len(ids) for ids in model.signal_ids.values())  # room in a static cache for _collect's forward
    cache = decoding_cache(model.llm, model.config.llm, len(conversations),
                           inputs_embeds.shape[1] + max_new_tokens + longest_run + 1)
    compile_config = decoding_compile_config(model.config.llm, model.device)
    suppressed = SuppressedTokens.for_llm(model.llm)
    with (tqdm(total=max_new_tokens, desc="thinking", unit="tok", disable=not settings.progress, leave=False) as bar,
          LastLayerStates(model.llm) as states):
        out = model.llm.generate(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=settings.temperature > 0,
            temperature=settings.temperature if settings.temperature > 0 else None,
            top_p=settings.top_p if settings.temperature > 0 else None,
            logits_processor=LogitsProcessorList([*filter(None, [suppressed]), SignalCompletion(model.signal_ids),
                                                  _Progress(bar)]),
            suppress_tokens=None,  # done by ``suppressed`` with a mask built once
            stopping_criteria=StoppingCriteriaList([_turn_end(model.tokenizer),
                                                    *([_StopWhenSet(stop)] if stop is not None else [])]),
            pad_token_id=model.tokenizer.pad_token_id,
            eos_token_id=model.tokenizer.eos_token_id,
            use_cache=True,
            past_key_values=cache,
            compile_config=compile_config,
            disable_compile=compile_config is None,  # a static cache alone is not compiled (transformers would on CUDA)
            return_dict_in_generate=True,
        )
    timings["llm"] = time.perf_counter() - start
    if stop is not None and stop.is_set():
        raise Stopped("the turn was stopped while the LLM wrote")

    # 3. collect each answer's tokens and their last-layer states
    start = time.perf_counter()
    answers = [_collect(model, out, states.steps, row, batch.inputs_embeds[row, :length], settings)
               for row, length in enumerate(prompt_lengths)]
    timings["collect"] = time.perf_counter() - start

    # 4. project and 5. decode: one render per modality for the whole batch
    rendered_with = {m: render_settings(model, m, settings) for m in MODALITIES}
    turns, spans = [], []  # spans: the complete signal runs of each answer whose states are all there
    for (generated, states, forced), length in zip(answers, prompt_lengths):
        complete = [span for span in find_signal_spans(generated, model.signal_ids) if span.complete]
        turn = Turn(text=_clean_text(model, generated), raw_text=model.tokenizer.decode(generated),
                    signals=[span.modality for span in complete], forced=[m for m in MODALITIES if m in forced],
                    sample_rate=model.decoders.sample_rate, fps=model.decoders.fps,
                    prompt_tokens=length, completion_tokens=len(generated))
        turn.settings = {**{f.name: getattr(settings, f.name) for f in fields(settings) if f.name != "progress"},
                         "outputs": list(settings.outputs) if settings.outputs is not None else None,
                         "decoders": {m: rendered_with[m] for m in dict.fromkeys(turn.signals)},
                         "memory": model.memory.name}
        turns.append(turn)
        spans.append([span for span in complete if span.start + span.length <= len(states)])
    order = list(dict.fromkeys(span.modality for answer in spans for span in answer))
    generators = [torch.Generator().manual_seed(settings.seed) for _ in conversations]
    media: dict[tuple[int, int], Any] = {}  # (row, span start) -> the rendered medium
    for modality in order if settings.render else ():
        start = time.perf_counter()
        items = [(row, span) for row, answer in enumerate(spans) for span in answer if span.modality == modality]
        hidden = torch.stack([torch.stack(answers[row][1][span.start : span.start + span.length])
                              for row, span in items])  # (N, signal tokens, H)
        rendered = model.decoders.render(
            modality,
            model.project_signals(modality, hidden),
            num_inference_steps=rendered_with[modality]["num_inference_steps"],
            guidance_scale=rendered_with[modality]["guidance_scale"],
            generator=[generators[row] for row, _ in items] if len(items) > 1 else generators[items[0][0]],
            height=settings.height,
            width=settings.width,
            num_frames=settings.num_frames,
            audio_seconds=settings.audio_seconds,
            progress=settings.progress,
            stop=stop,
        )
        media.update({(row, span.start): medium for (row, span), medium in zip(items, rendered)})
        timings[f"decode_{modality}"] = time.perf_counter() - start
    for row, (turn, answer) in enumerate(zip(turns, spans)):
        for span in answer if settings.render else ():  # in the answer's order
            kept = turn.media(span.modality)
            turn.outputs.append((span.modality, len(kept)))
            kept.append(media[(row, span.start)])
        turn.timings_s = dict(timings)
    return turns


def _left_padded(embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, T, H) and (B, T) -> left-padded, as generation continues every row from its end."""
    shifts = (mask.shape[1] - mask.sum(dim=1)).tolist()
    if not any(shifts):
        return embeds, mask
    return (torch.stack([row.roll(shift, dims=0) for row, shift in zip(embeds, shifts)]),
            torch.stack([row.roll(shift, dims=0) for row, shift in zip(mask, shifts)]))


def _collect(model, out, steps: list[torch.Tensor], row: int, prompt_embeds: torch.Tensor,
             settings: GenerationSettings):
    """One answer of the batch: (its tokens, the last-layer state (H,) of each, the modalities appended).

    The states of tokens 0..n-2 come from generation (``steps``: LastLayerStates' (B, H) per step); the last token
    and any signal tokens still missing (a run cut short, a modality asked for or claimed in words) go through one
    more forward: on the generation's cache for a batch of one, over the whole answer otherwise (the cache's other
    rows ran on past their answers' end).
    """
    generated = out.sequences[row].tolist()
    while len(generated) > 1 and generated[-1] == model.tokenizer.pad_token_id:  # a row that finished early
        generated.pop()
    wanted = set(settings.outputs or ())
    if settings.keep_claims:
        wanted.update(claimed_media(_clean_text(model, generated)))
    tail = _completion(model, generated, wanted)
    forced = {span.modality for span in find_signal_spans(tail, model.signal_ids)}
    states = [step[row] for step in steps[1 : len(generated)]]  # (H,) each
    signal_ids = {i for ids in model.signal_ids.values() for i in ids}
    if not tail and generated[-1] not in signal_ids:
        return generated, states, forced
    if out.sequences.shape[0] == 1:
        forward_ids = torch.tensor([[generated[-1], *tail]], device=model.device)
        mask = torch.ones(1, len(prompt_embeds) + len(generated) + len(tail), dtype=torch.long, device=model.device)
        extra = model.llm(input_ids=forward_ids, attention_mask=mask, past_key_values=out.past_key_values,
                          output_hidden_states=True, use_cache=True)
        states += list(extra.hidden_states[-1][0])
    else:
        answer = model.embed_tokens(torch.tensor(generated + tail, device=model.device))
        whole = model.llm(inputs_embeds=torch.cat([prompt_embeds, answer])[None], output_hidden_states=True)
        states += list(whole.hidden_states[-1][0, -(1 + len(tail)) :])
    return generated + tail, states, forced


def _token_budget(model, prompt_length: int, max_new_tokens: int) -> int:
    context = model.llm.config.max_position_embeddings
    if prompt_length >= context:
        raise UserError(
            f"the prompt is {prompt_length} tokens, longer than the model's context of {context}: shorten it "
            "or give fewer media"
        )
    if prompt_length + max_new_tokens > context:
        log.warning("only %d of %d new tokens fit the context of %d", context - prompt_length, max_new_tokens, context)
    return min(max_new_tokens, context - prompt_length)


def _completion(model, generated: list[int], wanted: set[str]) -> list[int]:
    """Signal tokens to append: the rest of a run cut short, then runs of wanted modalities not produced."""
    tail: list[int] = []
    while (forced := next_signal_token(generated + tail, model.signal_ids)) is not None:
        tail.append(forced)
    produced = {span.modality for span in find_signal_spans(generated + tail, model.signal_ids)}
    for modality in MODALITIES:
        if modality in wanted and modality not in produced:
            tail += model.signal_ids[modality]
    return tail


def _clean_text(model, ids: list[int]) -> str:
    """The answer without signal tokens, media markers, special tokens or the turn-end marker, and without the
    spaces the signal runs stood between ("a picture  and a sound ." -> "a picture and a sound.")."""
    hidden = {i for ids_ in model.signal_ids.values() for i in ids_}
    text = model.tokenizer.decode([i for i in ids if i not in hidden], skip_special_tokens=True)
    return tidy_spaces(text.split(TURN_END.strip())[0])


DECODER_DEFAULTS = {"num_inference_steps": 50, "guidance_scale": 7.5}  # the diffusers pipelines' own


def decoder_default(model, modality: str, key: str) -> float:
    """A render setting from the modality's decoder config, else the pipelines' default."""
    value = model.decoders.cfg[modality].get(key)
    return type(DECODER_DEFAULTS[key])(value if value is not None else DECODER_DEFAULTS[key])


def render_settings(model, modality: str, settings: GenerationSettings) -> dict[str, float]:
    """The denoising steps and guidance a modality renders with: the turn's, where set (0 included), else its decoder's."""
    chosen = {key: getattr(settings, key) for key in DECODER_DEFAULTS}
    return {key: value if value is not None else decoder_default(model, modality, key) for key, value in chosen.items()}


class Conversation:
    """Multi-turn chat with a NextMM model; earlier messages and their media stay in context."""

    def __init__(self, model, **settings):
        self.model = model
        self.settings = GenerationSettings().updated(**settings)
        self.messages: list[Message] = []

    def say(self, prompt: str, *, images=(), audios=(), videos=(), **settings) -> Turn:
        """Add a user message and answer it; ``settings`` override this conversation's for this turn."""
        if not isinstance(prompt, str):
            raise UserError(f"prompt={prompt!r} is a {type(prompt).__name__}: give the prompt as text (a str)")
        media = [to_media(m, item) for m, items in (("image", images), ("audio", audios), ("video", videos))
                 for item in ([items] if isinstance(items, (str, Path, Image.Image)) else items)]
        if not prompt.strip() and not media:
            raise UserError("empty prompt and no media: give a prompt, or an image, audio or video to respond to")
        user = Message("user", prompt, media)
        turn = generate_turn(self.model, [*self.messages, user], self.settings.updated(**settings))
        self.messages += [user, Message("assistant", turn.raw_text.split(TURN_END.strip())[0].strip())]
        return turn

    def reset(self) -> None:
        self.messages.clear()
