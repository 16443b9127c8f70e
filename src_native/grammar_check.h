// GBNF checking before llama.cpp sees a grammar: llama.cpp's own parser prints
// its reason to stderr and returns a bare failure, so we drive the parser rule
// by rule to catch the reason and report it in the exception instead.
#pragma once

#include "llama.h"

#include <string>

namespace allama {

// Empty when `grammar` parses and defines `root`; otherwise why not.
std::string grammar_problem(const llama_vocab * vocab, const std::string & grammar, const std::string & root);

}  // namespace allama
