"""nextmm: any-to-any multimodal generation in the NExT-GPT style.

    from nextmm import NextMM
    model = NextMM.from_config(DEFAULT_MODEL)
    turn = model.chat("surf vlog")
"""

import logging

__version__ = "0.1.0"

# peft imports bitsandbytes when it is installed (the quantize extra), and on CPUs with AVX512-BF16 bitsandbytes
# warns at import that an optional faster 4-bit kernel package ("kernels") is missing: a line on stderr for every
# command, quantized or not. llm.quantize works without that package.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

# The model the commands and the notebook use when none is named.
DEFAULT_MODEL = "toyworld"  # nextmm/conf/model/toyworld.yaml: the small model trained on the toyworld, shipped

__all__ = ["DEFAULT_MODEL", "NextMM"]


def __getattr__(name: str):
    # Imported on first use: `import nextmm.conf` or the config helpers should not pay for torch.
    if name == "NextMM":
        from nextmm.model import NextMM

        return NextMM
    raise AttributeError(f"module 'nextmm' has no attribute {name!r}")
