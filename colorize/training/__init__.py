"""Training: losses, optimisers, the data-parallel step, validation and the loop."""
