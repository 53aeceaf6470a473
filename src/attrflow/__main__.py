"""Allow ``python -m attrflow``."""

import sys

from attrflow.cli import main

sys.exit(main())
