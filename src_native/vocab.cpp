#include "vocab.h"

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <climits>
#include <string>
#include <vector>

namespace nb = nanobind;

namespace allama {

namespace {

// Texts longer than this are tokenized with the GIL released.
constexpr size_t kReleaseGilBytes = 4096;

std::string text_bytes(nb::handle text) {
    if (nb::isinstance<nb::bytes>(text)) {
        nb::bytes b = nb::borrow<nb::bytes>(text);
        return std::string(b.c_str(), b.size());
    }
    if (nb::isinstance<nb::str>(text)) {
        Py_ssize_t size = 0;
        const char * data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
        if (data == nullptr) {
            throw nb::python_error();
        }
        return std::string(data, static_cast<size_t>(size));
    }
    if (PyObject_CheckBuffer(text.ptr())) {
        return nb::cast<std::string>(nb::bytes(nb::module_::import_("builtins").attr("bytes")(text)));
    }
    throw nb::type_error("text must be str or bytes");
}

std::vector<llama_token> tokenize(const Vocab & v, const std::string & text, bool add_special, bool parse_special) {
    if (text.size() > static_cast<size_t>(INT32_MAX) / 2) {
        throw nb::value_error("text is too long to tokenize");
    }
    auto run = [&]() {
        std::vector<llama_token> tokens(text.size() + 8);
        int32_t n = llama_tokenize(v.get(), text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                                   static_cast<int32_t>(tokens.size()), add_special, parse_special);
        if (n < 0 && n != INT32_MIN) {
            tokens.resize(static_cast<size_t>(-n));
            n = llama_tokenize(v.get(), text.data(), static_cast<int32_t>(text.size()), tokens.data(),
                               static_cast<int32_t>(tokens.size()), add_special, parse_special);
        }
        if (n < 0) {
            throw std::length_error("tokenization result is too large");
        }
        tokens.resize(static_cast<size_t>(n));
        return tokens;
    };
    if (text.size() >= kReleaseGilBytes) {
        nb::gil_scoped_release release;
        return run();
    }
    return run();
}

std::string token_to_piece(const Vocab & v, llama_token token, int32_t lstrip, bool special) {
    v.check_token(token);
    char small[64];
    int32_t n = llama_token_to_piece(v.get(), token, small, sizeof(small), lstrip, special);
    if (n >= 0) {
        return std::string(small, static_cast<size_t>(n));
    }
    std::string out(static_cast<size_t>(-n), '\0');
    n = llama_token_to_piece(v.get(), token, out.data(), static_cast<int32_t>(out.size()), lstrip, special);
    out.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return out;
}

std::string detokenize(const Vocab & v, const std::vector<llama_token> & tokens, bool remove_special, bool unparse_special) {
    for (llama_token t : tokens) {
        v.check_token(t);
    }
    auto run = [&]() {
        std::string out(tokens.size() * 8 + 16, '\0');
        int32_t n = llama_detokenize(v.get(), tokens.data(), static_cast<int32_t>(tokens.size()), out.data(),
                                     static_cast<int32_t>(out.size()), remove_special, unparse_special);
        if (n < 0) {
            out.resize(static_cast<size_t>(-n));
            n = llama_detokenize(v.get(), tokens.data(), static_cast<int32_t>(tokens.size()), out.data(),
                                 static_cast<int32_t>(out.size()), remove_special, unparse_special);
        }
        out.resize(n < 0 ? 0 : static_cast<size_t>(n));
        return out;
    };
    if (tokens.size() >= kReleaseGilBytes / 4) {
        nb::gil_scoped_release release;
        return run();
    }
    return run();
}

nb::bytes to_bytes(const std::string & s) { return nb::bytes(s.data(), s.size()); }

}  // namespace

void Vocab::check_token(llama_token token) const {
    if (token < 0 || token >= n_tokens()) {
        throw nb::value_error(("token id " + std::to_string(token) + " is out of range [0, " +
                               std::to_string(n_tokens()) + ")").c_str());
    }
}

void init_vocab(nb::module_ & m) {
    auto special = [](llama_token (*fn)(const llama_vocab *)) {
        return [fn](const Vocab & v) { return fn(v.get()); };
    };
    nb::class_<Vocab>(m, "Vocab", "A model's tokenizer and special tokens. Special token getters return -1 when absent.")
        .def(nb::init<const Model &>(), nb::arg("model"))
        .def_prop_ro("n_tokens", &Vocab::n_tokens)
        .def_prop_ro("type", [](const Vocab & v) { return static_cast<int>(llama_vocab_type(v.get())); },
                     "llama_vocab_type: 0 none, 1 SPM, 2 BPE, 3 WPM, 4 UGM, 5 RWKV, 6 PLaMo-2.")
        .def("tokenize", [](const Vocab & v, nb::handle text, bool add_special, bool parse_special) {
                 return tokenize(v, text_bytes(text), add_special, parse_special);
             }, nb::arg("text"), nb::arg("add_special") = true, nb::arg("parse_special") = false,
             nb::sig("def tokenize(self, text: str | bytes, add_special: bool = True, parse_special: bool = False) -> list[int]"),
             "Text (UTF-8 bytes or str) to token ids. add_special adds BOS/EOS as the model asks; "
             "parse_special turns special-token text such as '<s>' into its token.")
        .def("token_to_piece", [](const Vocab & v, llama_token token, int32_t lstrip, bool special) {
                 return to_bytes(token_to_piece(v, token, lstrip, special));
             }, nb::arg("token"), nb::arg("lstrip") = 0, nb::arg("special") = false,
             "The bytes of one token (a piece may be part of a UTF-8 character).")
        .def("detokenize", [](const Vocab & v, const std::vector<llama_token> & tokens, bool remove_special, bool unparse_special) {
                 return to_bytes(detokenize(v, tokens, remove_special, unparse_special));
             }, nb::arg("tokens"), nb::arg("remove_special") = false, nb::arg("unparse_special") = false)
        .def("token_text", [](const Vocab & v, llama_token t) { v.check_token(t); return to_bytes(llama_vocab_get_text(v.get(), t)); },
             nb::arg("token"), "The token's raw vocabulary entry.")
        .def("token_score", [](const Vocab & v, llama_token t) { v.check_token(t); return llama_vocab_get_score(v.get(), t); }, nb::arg("token"))
        .def("token_attr", [](const Vocab & v, llama_token t) { v.check_token(t); return static_cast<int>(llama_vocab_get_attr(v.get(), t)); },
             nb::arg("token"), "llama_token_attr bit flags.")
        .def("is_eog", [](const Vocab & v, llama_token t) { v.check_token(t); return llama_vocab_is_eog(v.get(), t); }, nb::arg("token"),
             "True for end-of-generation tokens (EOS, EOT, ...).")
        .def("is_control", [](const Vocab & v, llama_token t) { v.check_token(t); return llama_vocab_is_control(v.get(), t); }, nb::arg("token"))
        .def_prop_ro("bos", special(llama_vocab_bos))
        .def_prop_ro("eos", special(llama_vocab_eos))
        .def_prop_ro("eot", special(llama_vocab_eot))
        .def_prop_ro("sep", special(llama_vocab_sep))
        .def_prop_ro("nl", special(llama_vocab_nl))
        .def_prop_ro("pad", special(llama_vocab_pad))
        .def_prop_ro("mask", special(llama_vocab_mask))
        .def_prop_ro("fim_pre", special(llama_vocab_fim_pre))
        .def_prop_ro("fim_suf", special(llama_vocab_fim_suf))
        .def_prop_ro("fim_mid", special(llama_vocab_fim_mid))
        .def_prop_ro("fim_pad", special(llama_vocab_fim_pad))
        .def_prop_ro("fim_rep", special(llama_vocab_fim_rep))
        .def_prop_ro("fim_sep", special(llama_vocab_fim_sep))
        .def_prop_ro("suppress_tokens", [](const Vocab & v) {
            int32_t n = 0;
            const llama_token * t = llama_vocab_get_suppress_tokens(v.get(), &n);
            return t == nullptr || n <= 0 ? std::vector<llama_token>{} : std::vector<llama_token>(t, t + n);
        }, "Tokens the model's metadata says never to sample (llama_vocab_get_suppress_tokens).")
        .def_prop_ro("add_bos", [](const Vocab & v) { return llama_vocab_get_add_bos(v.get()); })
        .def_prop_ro("add_eos", [](const Vocab & v) { return llama_vocab_get_add_eos(v.get()); })
        .def_prop_ro("add_sep", [](const Vocab & v) { return llama_vocab_get_add_sep(v.get()); })
        .def_prop_ro("eog_tokens", [](const Vocab & v) {
            std::vector<llama_token> out;
            for (llama_token t = 0; t < v.n_tokens(); ++t) {
                if (llama_vocab_is_eog(v.get(), t)) {
                    out.push_back(t);
                }
            }
            return out;
        }, "Every end-of-generation token id.");
}

}  // namespace allama
