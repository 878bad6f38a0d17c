"""`python -m deploy`: exit 0 with the files written, or 2 with every problem listed and nothing written.

`python -m deploy --layered-model ...` writes a layered deployment of the inference module's desired `model` instead
(deploy/layer.py)."""

import sys

if "--layered-model" in sys.argv[1:]:
    from deploy.layer import main
else:
    from deploy.manifest import main

raise SystemExit(main())
