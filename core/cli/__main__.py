"""``python -m core.cli ...`` (what ``torchrun ... -m core.cli train METHOD ...`` runs on each rank)."""
import sys

from . import main

if __name__ == "__main__":  # importing the package's modules (e.g. test_no_qt) runs nothing
    sys.exit(main())
