"""`python -m whyrec ...` runs the same CLI as the `whyrec` script (used where the script is not on PATH,
e.g. benchmark drivers that call the interpreter they run under)."""

import sys

from whyrec.cli import main

sys.exit(main())
