"""`python -m app`: see app/commands (the command line) and app/main.py (the composition root)."""

import sys

from app.commands import main

if __name__ == "__main__":
    sys.exit(main())
