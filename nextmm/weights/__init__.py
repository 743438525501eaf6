"""Weights on disk: the trained parts nextmm saves, the real weights a config needs, download, convert."""
