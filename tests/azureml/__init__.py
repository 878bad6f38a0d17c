"""Azure ML compatibility: real public scoring scripts (corpus/), the models they expect (models.py), the
requests to send (cases.py), Azure ML's own inference server as the reference (reference.py), the recorded
answers (golden/) and the differences allowed between it and this module (differences.py). See README.md."""
