// GBNF checking before llama.cpp sees a grammar: llama.cpp's own parser prints
// its reason to stderr and returns a bare failure, so we drive the parser rule
// by rule to catch the reason and report it in the exception instead.
#pragma once

#include "llama.h"

#include <string>
#include <vector>

namespace allama {

// Empty when `grammar` parses and defines `root`; otherwise why not.
std::string grammar_problem(const llama_vocab * vocab, const std::string & grammar, const std::string & root);

// A grammar sampler (lazy: applied only after a trigger pattern or token); GrammarFailure
// with the reason when the grammar does not parse or llama.cpp refuses it.
llama_sampler * init_grammar_sampler(const llama_vocab * vocab, const std::string & grammar, const std::string & root,
                                     bool lazy, const std::vector<std::string> & trigger_patterns,
                                     const std::vector<llama_token> & trigger_tokens);

// GrammarFailure unless the grammar sampler allows `token` next. It asks on a one-candidate
// array, which leaves the grammar's state alone: accepting a token a grammar refuses aborts
// the process (at the end of its text) or leaves it unusable.
void check_grammar_allows(llama_sampler * grammar, llama_token token);

}  // namespace allama
