"""`python -m allama ...` runs the `allama` command."""

from allama.cli import main

raise SystemExit(main())
