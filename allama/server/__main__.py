"""python -m allama.server: see allama.server.cli."""

from allama.server.cli import main

raise SystemExit(main())
