import sys

from paintbridge.cli import main

sys.exit(main())
