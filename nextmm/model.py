"""NextMM: the NExT-GPT model as a composition of built parts.

    media --ImageBindEncoder--> (B, 1024) --InputProjector--> one LLM token per medium
    prompt tokens + media tokens --LLM (Vicuna + LoRA)--> text with signal tokens [IMG0..3] [AUD0..7] [VID0..23]
    signal-token states --OutputProjector[modality]--> conditioning --Decoders[modality]--> image / audio / video

The parts are built elsewhere and passed in; this file only wires them. What trains is decided in
one place, `nextmm.training.trainable`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import cpu_offload_with_hook, init_empty_weights
from omegaconf import DictConfig, open_dict
from peft import PeftModel
from torch import nn
from transformers import PreTrainedTokenizerBase

from nextmm.checks import resolve_device, resolve_dtype
from nextmm.config import load_model_config, resolve_path
from nextmm.errors import ConfigError, UserError
from nextmm.inference.memory import MemoryPlan, plan_memory
from nextmm.inference.prompt import (
    DEFAULT_PROMPT_FORMAT,
    IGNORE_INDEX,
    MEDIA_POSITION,
    Media,
    Message,
    Segment,
    check_prompt_format,
    encode_segments,
)
from nextmm.inference.signals import find_signal_spans
from nextmm.modality import MODALITIES, signal_tokens
from nextmm.parts.decoders import Decoders
from nextmm.parts.encoder import ImageBindEncoder
from nextmm.parts.llm import added_tokens, build_llm, build_tokenizer, is_quantized, merged_for_inference
from nextmm.parts.projectors import InputProjector, build_output_projectors
from nextmm.weights.required import check_weights

log = logging.getLogger(__name__)

__all__ = ["IGNORE_INDEX", "MEDIA_POSITION", "EmbeddedBatch", "NextMM"]


@dataclass
class EmbeddedBatch:
    """LLM inputs for a batch of segment lists: one right-padded row per sample, or packed rows (R <= B) that hold
    several samples each, side by side, with ``position_ids`` restarting at 0 for each and no attention mask
    (transformers then attends only within each sample: masking_utils.find_packed_sequence_indices)."""

    inputs_embeds: torch.Tensor  # (B, T, H), or packed (R, T, H)
    attention_mask: torch.Tensor | None  # (B, T); None when packed
    labels: torch.Tensor  # (B, T), IGNORE_INDEX where no loss
    token_ids: torch.Tensor  # (B, T), MEDIA_POSITION at media tokens, pad id at padding
    position_ids: torch.Tensor | None = None  # packed: (R, T), 0 at each sample's BOS and at the row's padding
    samples: list[tuple[int, int, int]] | None = None  # packed: (row, start, length) of each sample, in batch order


class NextMM(nn.Module):
    def __init__(
        self,
        config: DictConfig,
        encoder: ImageBindEncoder,
        input_projector: InputProjector,
        llm: PeftModel,
        tokenizer: PreTrainedTokenizerBase | None,
        output_projectors: nn.ModuleDict,
        decoders: Decoders,
    ):
        super().__init__()
        self.config = config
        # the text the LLM was trained to read (nextmm.inference.prompt): nextgpt for the official release
        self.prompt_format = check_prompt_format(config.get("prompt_format", DEFAULT_PROMPT_FORMAT))
        self.encoder = encoder
        self.input_projector = input_projector
        self.llm = llm
        self.tokenizer = tokenizer
        self.output_projectors = output_projectors
        self.decoders = decoders  # diffusers pipelines, loaded lazily; not submodules: never trained or saved here
        self.trained_embeddings = False  # set when trained parts replaced the whole embedding matrices
        self._encoder_offload = None  # accelerate hook that moves ImageBind to the GPU only while it runs
        self.memory = MemoryPlan()  # where the parts wait between uses (from_config sets the plan it built with)
        if tokenizer is not None:
            self.signal_ids = {
                m: tokenizer.convert_tokens_to_ids(signal_tokens(m, config.signal_tokens[m])) for m in MODALITIES
            }

    # ----------------------------------------------------------------------------------------- build
    @classmethod
    def from_config(
        cls,
        config: str | Path | DictConfig | None = None,
        *,
        overrides: Sequence[str] = (),
        empty: bool = False,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        load_trained: bool = True,
        memory: str | MemoryPlan = "resident",
        memory_limit: float | str | None = None,
    ) -> "NextMM":
        """Build every part from a model config (a name in nextmm/conf/model, a checkpoint folder, or a config).

        ``empty=True`` builds the architecture on the meta device: no weights, no memory, for counting.
        None means ``nextmm.DEFAULT_MODEL``. ``memory`` (nextmm.inference.memory) says where the parts wait on
        CUDA: resident (all on the GPU), offload (ImageBind and the decoders in CPU memory, each moved to the GPU
        while it runs, the VAEs decoding in slices and tiles), sequential (the decoders' models moved one layer at
        a time), or auto: the first of these, with the LLM quantized if need be, whose estimated peak fits the
        free GPU memory or ``memory_limit`` (GiB, or a size such as "12GiB"). The plan is ``model.memory``.
        ``llm.merge_for_inference=true`` folds the loaded LoRA and token rows into the LLM's weights (a plain
        LlamaForCausalLM then, for answering; stages refuse it).
        """
        if config is None:
            from nextmm import DEFAULT_MODEL

            config = DEFAULT_MODEL
        if not isinstance(config, (str, Path, DictConfig)):
            raise ConfigError(f"model config {config!r}: give a name such as 'tiny', a checkpoint folder, or a "
                              "DictConfig")
        device = resolve_device(device)  # a bad name or a missing CUDA device fails before anything is built
        dtype = resolve_dtype(dtype, device)
        cfg = config if isinstance(config, DictConfig) else load_model_config(config, overrides)
        if not empty:
            check_weights(cfg, trained=load_trained)  # one message naming every missing weights path
        plan = memory if isinstance(memory, MemoryPlan) else (
            MemoryPlan() if empty else plan_memory(memory, cfg, device, dtype, memory_limit=memory_limit))
        if plan.quantize != cfg.llm.get("quantize"):
            cfg = copy.deepcopy(cfg)
            with open_dict(cfg):
                cfg.llm.quantize = plan.quantize
        offload = plan.offloaded
        counts = cfg.signal_tokens
        encoder = ImageBindEncoder.from_config(cfg.encoder, empty=empty)
        decoders = Decoders(cfg.decoders, device=device, dtype=dtype, placement=plan.placement,
                            vae_slicing=plan.vae_slicing, vae_tiling=plan.vae_tiling)
        if empty:
            tokenizer = None
            base_vocab = cfg.llm.architecture.vocab_size
            new_ids = list(range(base_vocab, base_vocab + len(added_tokens(counts))))
            vocab_size = new_ids[-1] + 1
        else:
            tokenizer = build_tokenizer(cfg.llm, counts)
            new_ids = tokenizer.convert_tokens_to_ids(added_tokens(counts))
            vocab_size = len(tokenizer)
        llm = build_llm(cfg.llm, vocab_size, new_ids, empty=empty, device=device, dtype=dtype)
        hidden = llm.config.hidden_size
        shapes = {m: decoders.conditioning_shape(m) for m in MODALITIES}
        with init_empty_weights() if empty else _seeded(cfg.get("seed", 0)):
            input_projector = InputProjector(encoder.embed_dim, hidden, cfg.input_projector.kind)
            output_projectors = build_output_projectors(cfg.output_projector, hidden, shapes)
        model = cls(cfg, encoder, input_projector, llm, tokenizer, output_projectors, decoders)
        model.memory = plan
        trained = resolve_path(cfg.get("trained"))
        if trained is not None and load_trained and not empty:
            from nextmm.weights.trained import load_trained_parts

            load_trained_parts(model, trained)
        if cfg.llm.get("merge_for_inference") and not empty:
            model.llm = merged_for_inference(model.llm)  # after the trained adapter and rows are in; answering only
        if not empty:
            for name, part in model.named_children():
                if name == "llm" and is_quantized(part):
                    continue  # loaded onto the device in its own format
                part.to(dtype=dtype)
                if not (offload and name == "encoder"):
                    part.to(device)
            if offload and torch.device(device).type == "cuda":
                model.encoder.to("cpu")  # it may have been built on the GPU
                _, model._encoder_offload = cpu_offload_with_hook(model.encoder, execution_device=device)
        model.eval()
        return model

    @property
    def device(self) -> torch.device:
        return next(self.input_projector.parameters()).device

    @property
    def hidden_size(self) -> int:
        return self.llm.config.hidden_size

    # ---------------------------------------------------------------------------------------- encode
    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """LLM input embeddings, including the trained rows of nextmm's new tokens: (...,) -> (..., H)."""
        return self.llm.get_input_embeddings()(ids)

    def embed_media(self, modality: str, data: torch.Tensor, *, encoded: bool = False) -> torch.Tensor:
        """Preprocessed media (B, ...), or with ``encoded`` their ImageBind features (B, D_enc) -> one LLM token
        each, (B, 1, H)."""
        features = data if encoded else self.encoder(modality, data)  # the encoder moves inputs to its device
        if self._encoder_offload is not None and not encoded:
            self._encoder_offload.offload()  # ImageBind back to CPU memory until the next media come in
        return self.input_projector(features.to(device=self.device, dtype=self._dtype))

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.input_projector.parameters()).dtype

    def embed_segments(
        self, batch: Sequence[Sequence[Segment]], *, pack: bool = False, pack_length: int | None = None
    ) -> EmbeddedBatch:
        """Turn segment lists into right-padded LLM inputs; media of one modality encode in one call.

        Every sequence starts with BOS. Text marked ``train`` gets labels, all else IGNORE_INDEX. The token ids
        follow the config's ``prompt_format`` (nextmm.inference.prompt.encode_segments). With ``pack`` the samples
        share rows of at most ``pack_length`` tokens (None: the longest sample's), see EmbeddedBatch.
        """
        media_tokens = self._embed_all_media(batch)
        labels, ids = [], []
        for sample in batch:
            sample_ids, sample_labels = self.encode(sample)
            ids.append(torch.tensor(sample_ids, device=self.device))
            labels.append(torch.tensor(sample_labels, device=self.device))
        # one lookup for the whole batch: with trainable token rows (peft) every lookup builds the whole matrix
        every = self.embed_tokens(torch.cat(ids).clamp(min=0))  # (sum T, H)
        embeds = []
        for sample_ids, sample_embeds, sample_media in zip(ids, every.split([len(i) for i in ids]), media_tokens):
            media_positions = (sample_ids == MEDIA_POSITION).nonzero().flatten()
            if len(media_positions):
                sample_embeds = sample_embeds.index_put((media_positions,), sample_media)
            embeds.append(sample_embeds)  # (T, H)
        if pack:
            return _pack_batch(embeds, labels, ids, self.tokenizer.pad_token_id, pack_length)
        return _pad_batch(embeds, labels, ids, self.tokenizer.pad_token_id)

    def encode(self, segments: Sequence[Segment]) -> tuple[list[int], list[int]]:
        """One sample's (token ids, labels) in the model's prompt format, MEDIA_POSITION where media go."""
        return encode_segments(self.tokenizer, segments, self.prompt_format, added_tokens(self.config.signal_tokens))

    def _embed_all_media(self, batch: Sequence[Sequence[Segment]]) -> list[torch.Tensor]:
        """(n_media_i, H) per sample, all media of one modality (and form: raw or precomputed) in one call."""
        found = [[s for s in sample if isinstance(s, Media)] for sample in batch]
        out = [torch.empty(len(media), self.hidden_size, device=self.device, dtype=self._dtype) for media in found]
        for modality, encoded in itertools.product(MODALITIES, (False, True)):
            where = [(i, j) for i, media in enumerate(found) for j, m in enumerate(media)
                     if m.modality == modality and m.encoded == encoded]
            if not where:
                continue
            data = torch.stack([found[i][j].data for i, j in where])
            tokens = self.embed_media(modality, data, encoded=encoded)[:, 0]  # (N, H)
            for (i, j), token in zip(where, tokens):
                out[i][j] = token
        return out

    # ------------------------------------------------------------------------------------------ chat
    def chat(self, prompt: str, *, images=(), audios=(), videos=(), **settings):
        """One turn from a fresh conversation: text plus the media the answer calls for (a Turn).

        Media are paths or in-memory (PIL images, (waveform, rate), (frames, fps)); ``settings`` are
        GenerationSettings fields such as max_new_tokens, seed or outputs=["image"].
        """
        from nextmm.inference.conversation import Conversation

        return Conversation(self, **settings).say(prompt, images=images, audios=audios, videos=videos)

    def chat_batch(self, prompts: Sequence[str], **settings) -> list:
        """One turn for each prompt (text only, fresh conversations), answered together: one LLM pass and one
        diffusion batch per modality (nextmm.inference.conversation.generate_turns). Returns a Turn per prompt."""
        from nextmm.inference.conversation import GenerationSettings, generate_turns

        if isinstance(prompts, str) or not prompts:
            raise UserError("chat_batch takes a non-empty list of prompts; for one prompt use chat()")
        empty = [i for i, prompt in enumerate(prompts) if not str(prompt).strip()]
        if empty:
            raise UserError(f"prompt {empty[0]} of the batch is empty: every prompt needs text")
        conversations = [[Message("user", str(prompt))] for prompt in prompts]
        return generate_turns(self, conversations, GenerationSettings().updated(**settings))

    def conversation(self, **settings):
        """A multi-turn conversation; earlier turns and their media stay in context."""
        from nextmm.inference.conversation import Conversation

        return Conversation(self, **settings)

    # ---------------------------------------------------------------------------------------- decode
    def signal_input_embeds(self, modality: str) -> torch.Tensor:
        """Input embeddings of a modality's signal tokens, (N, H)."""
        ids = torch.tensor(self.signal_ids[modality], device=self.device)
        return self.embed_tokens(ids)

    def project_signals(self, modality: str, hidden_states: torch.Tensor) -> torch.Tensor:
        """Signal-token last-layer states (B, N, H) -> decoder conditioning (B, *conditioning_shape)."""
        input_embeds = self.signal_input_embeds(modality).unsqueeze(0).expand(hidden_states.shape[0], -1, -1)
        return self.output_projectors[modality](hidden_states, input_embeds)

    def signal_hidden_states(
        self, token_ids: torch.Tensor, hidden_states: torch.Tensor, samples: list[tuple[int, int, int]] | None = None
    ) -> dict[str, tuple[list[int], torch.Tensor]]:
        """Complete signal runs in a teacher-forced batch: modality -> (samples, states (n, N, H)).

        A sample is a row of ``token_ids`` (R, T), or with ``samples`` (a packed EmbeddedBatch's) the tokens
        ``(row, start, length)`` say; runs come in sample, then position, order.
        """
        rows_of = token_ids.tolist()
        found: dict[str, tuple[list[int], list[torch.Tensor]]] = {}
        for index, (row, start, length) in enumerate(samples or [(r, 0, len(ids)) for r, ids in enumerate(rows_of)]):
            for span in find_signal_spans(rows_of[row][start : start + length], self.signal_ids):
                if span.complete:
                    where, states = found.setdefault(span.modality, ([], []))
                    where.append(index)
                    states.append(hidden_states[row, start + span.start : start + span.start + span.length])
        return {m: (where, torch.stack(states)) for m, (where, states) in found.items()}


def _pad_batch(embeds: list, labels: list, ids: list, pad_id: int) -> EmbeddedBatch:
    length = max(e.shape[0] for e in embeds)
    batch, hidden = len(embeds), embeds[0].shape[-1]
    out_embeds = embeds[0].new_zeros(batch, length, hidden)
    out_mask = torch.zeros(batch, length, dtype=torch.long, device=embeds[0].device)
    out_labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long, device=embeds[0].device)
    out_ids = torch.full((batch, length), pad_id, dtype=torch.long, device=embeds[0].device)
    for row, (e, l, i) in enumerate(zip(embeds, labels, ids)):
        out_embeds[row, : len(e)] = e
        out_mask[row, : len(e)] = 1
        out_labels[row, : len(l)] = l
        out_ids[row, : len(i)] = i
    return EmbeddedBatch(out_embeds, out_mask, out_labels, out_ids)


def _pack_batch(embeds: list, labels: list, ids: list, pad_id: int, length: int | None) -> EmbeddedBatch:
    """Samples side by side in rows of at most ``length`` tokens (None: the longest sample's), as ``_pack_rows``
    lays them out; each sample's positions restart at 0, and so do those of a row's padding, a block of its own
    that no sample sees.

    A sample's first label must be IGNORE_INDEX (its BOS): the last token of the sample before it in the row
    predicts it, and must not be trained to.
    """
    sizes = [len(i) for i in ids]
    length = max(sizes) if length is None else length
    if max(sizes) > length:
        raise ValueError(f"a sample of {max(sizes)} tokens does not fit rows of pack_length={length}")
    if (torch.stack([sample_labels[0] for sample_labels in labels]) != IGNORE_INDEX).any():
        raise ValueError("a sample's first token has a label: packed, the sample before it would learn to predict it")
    rows = _pack_rows(sizes, length)
    width = max(sum(sizes[i] for i in members) for members in rows)
    hidden, device = embeds[0].shape[-1], embeds[0].device
    out_embeds = embeds[0].new_zeros(len(rows), width, hidden)
    out_labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long, device=device)
    out_ids = torch.full((len(rows), width), pad_id, dtype=torch.long, device=device)
    positions = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    samples: list[tuple[int, int, int]] = [(0, 0, 0)] * len(ids)
    for row, members in enumerate(rows):
        start = 0
        for index in members:
            end = start + sizes[index]
            out_embeds[row, start:end] = embeds[index]
            out_labels[row, start:end] = labels[index]
            out_ids[row, start:end] = ids[index]
            positions[row, start:end] = torch.arange(sizes[index], device=device)
            samples[index] = (row, start, sizes[index])
            start = end
        positions[row, start:] = torch.arange(width - start, device=device)  # padding: a block of its own
    return EmbeddedBatch(out_embeds, None, out_labels, out_ids, positions, samples)


def _pack_rows(sizes: list[int], length: int) -> list[list[int]]:
    """Sample indices per row: first-fit decreasing into rows of some width from the longest sample's to ``length``,
    the width whose rows x width (the tokens the LLM then runs, padding included) is smallest, fewer rows on a tie.
    The longest sample's width is among those tried, so packing never runs more tokens than right-padding does."""
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])

    def first_fit(width: int) -> list[list[int]]:
        rows: list[list[int]] = []
        filled: list[int] = []
        for index in order:
            row = next((r for r, used in enumerate(filled) if used + sizes[index] <= width), len(rows))
            if row == len(rows):
                rows.append([])
                filled.append(0)
            rows[row].append(index)
            filled[row] += sizes[index]
        return rows

    def cost(rows: list[list[int]]) -> tuple[int, int]:
        return len(rows) * max(sum(sizes[i] for i in members) for members in rows), len(rows)

    longest, total = max(sizes), sum(sizes)
    widths = {longest, length, *(min(length, max(longest, -(-total // k))) for k in range(1, len(sizes) + 1))}
    return min((first_fit(width) for width in sorted(widths)), key=cost)


@contextlib.contextmanager
def _seeded(seed: int):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield
