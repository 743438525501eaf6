"""The boxes of the NExT-GPT figure: encoder and its preprocessing, projectors, LLM, decoders."""
