import sys

from smsd.cli import main

sys.exit(main())
