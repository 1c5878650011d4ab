"""``python3 -m iidm_convert ...`` (from tools/): the same command as tools/convert_checkpoint.py."""

import sys

from .cli import main

sys.exit(main())
