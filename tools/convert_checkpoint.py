#!/usr/bin/python3
"""Convert SDM / LDM / IIDM checkpoints (.pt, .ckpt, Jittor .pkl, .safetensors) to safetensors.

The entry point of the command documented in README.md; the converter is the package
tools/iidm_convert/ next to this file (its __init__.py lists the modules).  Run with
/usr/bin/python3 (the Debian interpreter that has torch).
"""

import sys

from iidm_convert.cli import main

if __name__ == "__main__":
    sys.exit(main())
