import sys

from cascal.cli import main

sys.exit(main())
