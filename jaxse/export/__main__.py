import sys

from jaxse.export.jax2tf_export import main

sys.exit(main())
