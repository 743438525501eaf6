"""The one training loop and what it is made of: losses, what trains, optimization, checkpoints."""
