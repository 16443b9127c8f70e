#include "grammar_check.h"

#include "errors.h"
#include "logging.h"

// llama.cpp's internal parser (vendor/llama.cpp/src): not part of its public API.
#include "llama-grammar.h"

#include <cctype>
#include <cmath>
#include <exception>

namespace allama {

namespace {

// Skips blanks, newlines and '#' comments, as GBNF allows between rules.
const char * skip_space(const char * pos) {
    while (*pos) {
        if (*pos == '#') {
            while (*pos && *pos != '\n' && *pos != '\r') {
                ++pos;
            }
        } else if (std::isspace(static_cast<unsigned char>(*pos))) {
            ++pos;
        } else {
            break;
        }
    }
    return pos;
}

std::string symbol_name(const llama_grammar_parser & parser, uint32_t id) {
    for (const auto & [name, sid] : parser.symbol_ids) {
        if (sid == id) {
            return name;
        }
    }
    return "#" + std::to_string(id);
}

}  // namespace

std::string grammar_problem(const llama_vocab * vocab, const std::string & grammar, const std::string & root) {
    llama_grammar_parser parser(vocab);
    try {
        const char * pos = skip_space(grammar.c_str());
        while (*pos) {
            pos = parser.parse_rule(pos);
        }
    } catch (const std::exception & e) {
        return e.what();
    }
    for (uint32_t id = 0; id < parser.rules.size(); ++id) {
        if (parser.rules[id].empty()) {
            return "rule '" + symbol_name(parser, id) + "' is used but never defined";
        }
        for (const auto & elem : parser.rules[id]) {
            if (elem.type == LLAMA_GRETYPE_RULE_REF &&
                (elem.value >= parser.rules.size() || parser.rules[elem.value].empty())) {
                return "rule '" + symbol_name(parser, elem.value) + "' is used but never defined";
            }
        }
    }
    if (parser.rules.empty()) {
        return "the grammar defines no rules";
    }
    if (parser.symbol_ids.find(root) == parser.symbol_ids.end()) {
        return "the grammar has no rule named '" + root + "'";
    }
    return {};
}

llama_sampler * init_grammar_sampler(const llama_vocab * vocab, const std::string & grammar, const std::string & root,
                                     bool lazy, const std::vector<std::string> & trigger_patterns,
                                     const std::vector<llama_token> & trigger_tokens) {
    if (!grammar.empty()) {
        const std::string problem = grammar_problem(vocab, grammar, root);
        if (!problem.empty()) {
            throw GrammarFailure("the grammar does not parse: " + problem);
        }
    }
    llama_sampler * sampler = nullptr;
    std::string reason;
    LogCapture capture;
    try {
        if (lazy) {
            std::vector<const char *> patterns;
            for (const auto & p : trigger_patterns) {
                patterns.push_back(p.c_str());
            }
            sampler = llama_sampler_init_grammar_lazy_patterns(vocab, grammar.c_str(), root.c_str(), patterns.data(),
                                                                patterns.size(), trigger_tokens.data(),
                                                                trigger_tokens.size());
        } else {
            sampler = llama_sampler_init_grammar(vocab, grammar.c_str(), root.c_str());
        }
    } catch (const std::exception & e) {
        reason = e.what();
    }
    if (sampler == nullptr) {
        throw GrammarFailure("the grammar is not usable: " + (reason.empty() ? capture.message("llama.cpp rejected it")
                                                                             : reason));
    }
    return sampler;
}

void check_grammar_allows(llama_sampler * grammar, llama_token token) {
    llama_token_data candidate{token, 0.0f, 0.0f};
    llama_token_data_array one{&candidate, 1, -1, false};
    try {
        llama_sampler_apply(grammar, &one);
    } catch (const std::exception & e) {
        throw GrammarFailure("the grammar failed to check token " + std::to_string(token) + ": " + e.what());
    }
    if (std::isinf(candidate.logit) && candidate.logit < 0) {
        throw GrammarFailure("the grammar does not allow token " + std::to_string(token) + " here");
    }
}

}  // namespace allama
