"""``python -m tflite_transfer flowers`` / ``python -m tflite_transfer train DIR``."""
import sys

from .cli import main

sys.exit(main())
