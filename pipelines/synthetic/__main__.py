"""``python -m pipelines.synthetic``: generate a dataset (see :func:`pipelines.synthetic.main`)."""
import sys

from pipelines.synthetic import main

sys.exit(main())
