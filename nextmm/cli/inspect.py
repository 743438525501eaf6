"""``python -m nextmm inspect model=<name>``: parameter counts of every part, and the estimated GPU memory of a
turn under each memory setting (float16, the decoders' default sizes), as one JSON object.

The model is built on the meta device, so even the 7B configuration needs no weights and no memory.
"""

from __future__ import annotations

import json

from omegaconf import DictConfig, OmegaConf

from nextmm.config import conf_dir
from nextmm.inference.memory import GiB, LADDER, estimate_peak, part_sizes
from nextmm.modality import MODALITIES
from nextmm.model import NextMM
from nextmm.training.trainable import count_by_part

STAGES = ("encoder_side", "decoder_side", "modality_switching")


def stage_parts(stage: str) -> list[str]:
    """The parts a stage trains, as its config declares them."""
    return list(OmegaConf.load(conf_dir() / "stage" / f"{stage}.yaml").trainable)


def parameter_report(model: NextMM) -> dict:
    """Parameter counts in the layout of the NExT-GPT paper's table."""
    parts = count_by_part(model)
    return {
        "encoder": parts["encoder"],
        "input_projector": parts["input_projector"],
        "llm": parts["llm"],
        "lora": parts["lora"],
        "output_projectors": {
            m: sum(p.numel() for p in model.output_projectors[m].parameters()) for m in MODALITIES
        },
        "decoders": {m: model.decoders.num_parameters(m) for m in MODALITIES},
        "trainable": {stage: sum(parts[p] for p in stage_parts(stage)) for stage in STAGES},
    }


def memory_report(model: NextMM) -> dict:
    """Estimated peak GPU memory of a text -> text + image + audio + video turn, GiB, for each setting that
    memory=auto chooses from (nextmm.inference.memory), in float16 at the decoders' default sizes."""
    sizes = part_sizes(model.config, model)
    return {plan.name: round(estimate_peak(sizes, plan, model.config.decoders)["turn"] / GiB, 2) for plan in LADDER}


def main(cfg: DictConfig) -> None:
    model = NextMM.from_config(cfg.model, empty=True)
    print(json.dumps({**parameter_report(model), "memory_gib": memory_report(model)}))
