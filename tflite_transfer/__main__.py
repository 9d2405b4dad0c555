"""``python -m tflite_transfer flowers | train DIR | classify IMAGE...`` (see cli.py)."""
import sys

from .cli import main

sys.exit(main())
