import sys

from antispam.cli import main

sys.exit(main())
