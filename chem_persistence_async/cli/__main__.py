"""``python -m chem_persistence_async.cli``."""

import sys

from chem_persistence_async.cli.main import main

sys.exit(main())
