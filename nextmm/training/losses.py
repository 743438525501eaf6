"""The training losses of NExT-GPT's three stages, as one module a stage configures by its weights.

    nll        next-token NLL on the assistant answers: captions (encoder side), signal tokens (decoder
               side), whole replies (modality switching); over the tokens the LLM may emit (answer_nll)
    align/<m>  distance between the output projector's conditioning for each complete signal-token run and
               what the decoder's own text encoder makes of the output's caption (precomputed or on the fly)
    denoise/<m> the frozen UNet's noise-prediction error when conditioned on that projection, min-SNR
               weighted, for outputs that come with target media

``StageLoss`` is an nn.Module so that accelerate can wrap it for DDP/FSDP: its forward is the whole
model's training forward. With ``pack`` the batch's samples share LLM rows (train.pack_sequences): every term is
the same as on the right-padded batch, for fewer padding tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from torch import nn

from nextmm.data.dataset import Batch, Output
from nextmm.model import IGNORE_INDEX


def alignment_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Distance between conditionings (B, ..., D).

    ``l2``: the Euclidean distance of each D-vector, averaged (NExT-GPT's ``l2_loss``); ``mse``: mean squared error.
    """
    if predicted.shape != target.shape:
        raise ValueError(f"alignment: predicted {tuple(predicted.shape)} vs target {tuple(target.shape)}")
    if kind == "l2":
        return (predicted - target).pow(2).sum(dim=-1).sqrt().mean()
    if kind == "mse":
        return F.mse_loss(predicted, target)
    raise ValueError(f"unknown alignment loss {kind!r}: use 'l2' or 'mse'")


def emitted_tokens(llm: nn.Module) -> torch.Tensor | None:
    """The ids the LLM may emit, (A,): every id but its generation config's ``suppress_tokens`` (a toy LLM's tokens
    outside its training text); None when it suppresses none."""
    suppressed = llm.generation_config.suppress_tokens
    if not suppressed:
        return None
    keep = torch.ones(llm.get_input_embeddings().weight.shape[0], dtype=torch.bool)
    keep[torch.as_tensor(list(suppressed))] = False
    return keep.nonzero().flatten()


def answer_nll(llm: nn.Module, embedded, vocabulary: torch.Tensor | None = None, *,
               output_hidden_states: bool = False):
    """Mean next-token NLL of the labelled tokens of an EmbeddedBatch; returns (loss, the LLM's output).

    The LM head runs only where a label follows: answers are a small part of a conversation, and a 32000-token
    head is most of a small LLM's cost. With a ``vocabulary`` (emitted_tokens) the softmax is over those tokens
    alone, as generation samples them, and with tied embeddings only their rows are multiplied; an answer token
    outside it is an error.
    """
    targets = embedded.labels[:, 1:]  # (B, T-1)
    positions = (targets != IGNORE_INDEX).any(dim=0).nonzero().flatten()  # (K,) positions before some label
    tied = vocabulary is not None and llm.config.tie_word_embeddings
    # no KV cache: a training forward reads none, and with one transformers would not see packed rows as packed
    out = llm(inputs_embeds=embedded.inputs_embeds, attention_mask=embedded.attention_mask,
              position_ids=embedded.position_ids, use_cache=False, output_hidden_states=output_hidden_states or tied,
              logits_to_keep=1 if tied or not len(positions) else positions)
    if not len(positions):
        return out.logits.sum() * 0.0, out
    targets = targets[:, positions]  # (B, K)
    if vocabulary is None:
        logits = out.logits.float()  # (B, K, V)
    else:
        vocabulary = vocabulary.to(targets.device)
        place = torch.full((llm.get_input_embeddings().weight.shape[0],), -1, device=targets.device)
        place[vocabulary] = torch.arange(len(vocabulary), device=targets.device)
        asked = targets[targets != IGNORE_INDEX]
        if (place[asked] < 0).any():
            raise ValueError(f"answer tokens {sorted(set(asked[place[asked] < 0].tolist()))[:10]} are among the "
                             "LLM's suppress_tokens (generation_config.json): it was never trained to emit them")
        if tied:  # the head's rows of these tokens are their input rows (trained token rows included)
            rows = llm.get_input_embeddings()(vocabulary)  # (A, H)
            logits = out.hidden_states[-1][:, positions].float() @ rows.float().T  # (B, K, A)
        else:
            logits = out.logits.float()[..., vocabulary]
        targets = torch.where(targets == IGNORE_INDEX, IGNORE_INDEX, place[targets.clamp(min=0)])
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX), out


def min_snr_weights(scheduler: DDPMScheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023) per sample, for epsilon or v prediction: (B,)."""
    alphas_cumprod = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas_cumprod / (1 - alphas_cumprod)
    clipped = snr.clamp(max=gamma)
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr


def denoising_loss(
    pipeline, modality: str, conditioning: torch.Tensor, media: torch.Tensor, snr_gamma: float
) -> torch.Tensor:
    """Noise-prediction loss of the frozen decoder conditioned on ``conditioning`` (B, *shape).

    ``media`` is target media as nextmm.data.decoder_media makes it: image (B, 3, H, W), video
    (B, F, 3, H, W), audio mel (B, 1, T, M). Gradients reach only the conditioning.
    """
    unet, vae = pipeline.unet, pipeline.vae
    unet.requires_grad_(False)
    vae.requires_grad_(False)
    scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)  # training noise schedule of the decoder
    media = media.to(device=conditioning.device, dtype=vae.dtype)

    # 1. target media -> latents
    with torch.no_grad():
        if modality == "video":
            batch, frames = media.shape[:2]
            latents = vae.encode(media.flatten(0, 1)).latent_dist.sample()  # (B*F, C, h, w)
            latents = latents.unflatten(0, (batch, frames)).transpose(1, 2)  # (B, C, F, h, w)
        else:
            latents = vae.encode(media).latent_dist.sample()  # (B, C, h, w)
        latents = latents * vae.config.scaling_factor

    # 2. noise at random timesteps
    noise = torch.randn_like(latents)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)

    # 3. predict with the projected conditioning (AudioLDM takes it as class labels)
    conditioning = conditioning.to(unet.dtype)
    if modality == "audio":
        predicted = unet(noisy, timesteps, encoder_hidden_states=None, class_labels=conditioning).sample
    else:
        predicted = unet(noisy, timesteps, encoder_hidden_states=conditioning).sample

    # 4. min-SNR-weighted error
    if scheduler.config.prediction_type == "epsilon":
        target = noise
    else:
        target = scheduler.get_velocity(latents, noise, timesteps)
    per_sample = (predicted.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return (min_snr_weights(scheduler, timesteps, snr_gamma) * per_sample).mean()


class StageLoss(nn.Module):
    """NLL plus, with nonzero weights, alignment and denoising terms: forward(batch) -> {name: scalar}.

    Terms: ``loss`` (the weighted sum), ``nll``, ``align/<modality>``, ``denoise/<modality>``; a modality's
    terms appear when the batch has outputs of it. Alignment targets come from the batch (precomputed)
    or, when absent, from the decoder's text encoder now. ``pack``: the LLM reads the samples packed into rows of
    ``pack_length`` tokens (None: the batch's longest sample), NextMM.embed_segments.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        alignment_weight: float = 0.0,
        alignment: str = "l2",
        denoising_weight: float = 0.0,
        snr_gamma: float = 5.0,
        pack: bool = False,
        pack_length: int | None = None,
    ):
        super().__init__()
        self.model = model
        self.pack, self.pack_length = pack, pack_length
        self.alignment_weight, self.alignment = alignment_weight, alignment
        self.denoising_weight, self.snr_gamma = denoising_weight, snr_gamma
        alignment_loss(torch.zeros(1), torch.zeros(1), alignment)  # fail on a bad name now, not at step 1
        self.vocabulary = emitted_tokens(model.llm)  # None: every token

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        model = self.model
        if not len(batch):  # every sample was bad: a zero loss keeps all processes stepping together
            return {"loss": sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0}

        # 1. the LLM over the whole conversation; NLL on the answers
        embedded = model.embed_segments(batch.segments, pack=self.pack, pack_length=self.pack_length)
        with_signals = self.alignment_weight > 0 or self.denoising_weight > 0
        nll, out = answer_nll(model.llm, embedded, self.vocabulary, output_hidden_states=with_signals)
        terms = {"nll": nll}
        loss = nll
        if not with_signals:
            return {"loss": loss, **terms}

        # 2. each complete signal-token run -> the decoder's conditioning, aligned to its caption's
        found = model.signal_hidden_states(embedded.token_ids, out.hidden_states[-1], embedded.samples)
        for modality, (rows, states) in found.items():
            outputs = _outputs_in_order(batch.outputs, rows, modality)
            conditioning = model.project_signals(modality, states)  # (n, *conditioning_shape)
            if self.alignment_weight > 0:
                target = _alignment_targets(model, modality, outputs).to(conditioning)
                terms[f"align/{modality}"] = alignment_loss(conditioning, target, self.alignment)
                loss = loss + self.alignment_weight * terms[f"align/{modality}"]
            with_media = [i for i, output in enumerate(outputs) if output.media is not None]
            if self.denoising_weight > 0 and with_media:
                media = torch.stack([outputs[i].media for i in with_media])
                pipeline = model.decoders.pipeline(modality)
                term = denoising_loss(pipeline, modality, conditioning[with_media], media, self.snr_gamma)
                terms[f"denoise/{modality}"] = term
                loss = loss + self.denoising_weight * term
        return {"loss": loss, **terms}


def _outputs_in_order(outputs: list[list[Output]], rows: list[int], modality: str) -> list[Output]:
    """The Output of each signal run, given the sample of each run (runs come in sample, then position, order)."""
    queues = {row: [o for o in outputs[row] if o.modality == modality] for row in set(rows)}
    ordered = []
    for row in rows:
        if not queues[row]:
            raise RuntimeError(f"row {row} has more {modality} signal-token runs than {modality} outputs")
        ordered.append(queues[row].pop(0))
    return ordered


def _alignment_targets(model: nn.Module, modality: str, outputs: list[Output]) -> torch.Tensor:
    if all(output.target is not None for output in outputs):
        return torch.stack([output.target for output in outputs])
    return model.decoders.encode_text(modality, [output.caption for output in outputs])
