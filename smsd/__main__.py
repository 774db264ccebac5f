import sys

from smsd.cli.main import main

sys.exit(main())
