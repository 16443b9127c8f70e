"""`python -m allama.compat.llama_cpp.server` (or `python -m llama_cpp.server` after
allama.compat.install()): allama's server, with llama-cpp-python's command-line options."""

from allama.server.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
