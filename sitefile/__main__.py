"""``python -m sitefile SITE.yaml`` (`make check-site`): validate a site file."""

from sitefile.load import main

raise SystemExit(main())
