"""``python -m core.cli ...`` (what ``torchrun ... -m core.cli train METHOD ...`` runs on each rank)."""
import sys

from . import main

sys.exit(main())
