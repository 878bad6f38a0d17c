"""Model rollout: the twin's desired `model` bundle downloaded into the model store, verified, swapped in,
watched on probation and swapped back if it fails (agent.py, probation.py)."""
