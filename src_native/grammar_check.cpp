#include "grammar_check.h"

// llama.cpp's internal parser (vendor/llama.cpp/src): not part of its public API.
#include "llama-grammar.h"

#include <cctype>
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

}  // namespace allama
