"""The three NExT-GPT training stages, each a recipe on the one loop (nextmm.training.loop)."""
