"""``python -m exchange``: run the local exchange standalone (see ``exchange.server``)."""
from exchange.server import main

raise SystemExit(main())
