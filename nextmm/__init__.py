"""nextmm: any-to-any multimodal generation in the NExT-GPT style.

    from nextmm import NextMM
    model = NextMM.from_config(DEFAULT_MODEL)
    turn = model.chat("surf vlog")
"""

__version__ = "0.1.0"

# The model the commands and the notebook use when none is named.
DEFAULT_MODEL = "toyworld"  # nextmm/conf/model/toyworld.yaml: the small model trained on the toyworld, shipped

__all__ = ["DEFAULT_MODEL", "NextMM"]


def __getattr__(name: str):
    # Imported on first use: `import nextmm.conf` or the config helpers should not pay for torch.
    if name == "NextMM":
        from nextmm.model import NextMM

        return NextMM
    raise AttributeError(f"module 'nextmm' has no attribute {name!r}")
