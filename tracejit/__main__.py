"""``python -m tracejit``: see tracejit.cli."""

import sys

from tracejit.cli import main

if __name__ == "__main__":
    sys.exit(main())
