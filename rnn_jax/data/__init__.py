"""Tasks and data loaders. Generated tasks are pure functions of their arguments (and a PRNG key)."""
