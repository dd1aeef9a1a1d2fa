import sys

from mredit.cli import main

sys.exit(main())
