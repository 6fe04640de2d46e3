import sys

from gpuwire.cli import main

sys.exit(main())
