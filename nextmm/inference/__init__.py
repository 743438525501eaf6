"""One turn of any-to-any generation: the prompt, the signal tokens, the turn, what it writes."""
