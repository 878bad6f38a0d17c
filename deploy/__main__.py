"""`python -m deploy`: exit 0 with the files written, or 2 with every problem listed and nothing written."""

from deploy.manifest import main

raise SystemExit(main())
