"""Fuzzing harness: every input has an outcome (`make fuzz`; a fast slice runs in `make test`).

Each message in gets exactly one prediction or one error record, no input can crash the module or
change another message's outcome, and a bad twin document, method payload or HTTP request gets a
clear refusal while the previous good state holds. FUZZ_EXAMPLES scales the examples per target;
the session ends with the number of cases each target ran (conftest.py).
"""
