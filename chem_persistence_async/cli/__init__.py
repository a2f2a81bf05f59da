"""``chem-persist``: the command line, and the composition root (the only place that picks a
backend for the user).

Exit status: 0 done; 1 the demo flow failed; 2 a usage or configuration mistake, or any error the
library raised on purpose (one line on stderr, never a traceback, never a password); 130 after
Ctrl-C, 143 after SIGTERM.
"""

from chem_persistence_async.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
