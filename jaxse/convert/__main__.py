import sys

from jaxse.convert.asteroid import main

sys.exit(main())
