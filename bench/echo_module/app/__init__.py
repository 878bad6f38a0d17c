"""An echo module: what the SDK alone costs (bench/lowrate.py runs it in the inference module's place)."""
