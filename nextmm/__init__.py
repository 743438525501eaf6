"""nextmm: any-to-any multimodal generation in the NExT-GPT style."""

__version__ = "0.1.0"
