"""Run an experiment's ``main(argv)`` in this fresh process and print its result as the last line (JSON).

    python tests/_run_main.py MODULE [ARG ...]

Used by tests/test_experiments.py: experiments train for hundreds of steps, so they run with XLA's default
optimisation level and JAX's default dtypes (float32), as a user runs them, not with the test processes'
compile-time settings (conftest.py's EXPERIMENT_FLAGS).
"""
import importlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

if __name__ == "__main__":
    result = importlib.import_module(sys.argv[1]).main(sys.argv[2:])
    print("\nRESULT " + json.dumps(result, default=float))
