"""llama-cpp-python's `llama_cpp.server`: allama's OpenAI-compatible server (allama.server;
`pip install 'allama[server]'`)."""
