import sys

from aicoderd.daemon.main import main

sys.exit(main())
