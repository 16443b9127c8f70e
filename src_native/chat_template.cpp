#include "chat_template.h"

#include "llama.h"

#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <utility>
#include <vector>

namespace nb = nanobind;

namespace allama {

namespace {

nb::bytes apply_template(const std::string & tmpl, const std::vector<std::pair<std::string, std::string>> & messages,
                         bool add_assistant) {
    std::vector<llama_chat_message> chat;
    chat.reserve(messages.size());
    for (const auto & [role, content] : messages) {
        chat.push_back({role.c_str(), content.c_str()});
    }
    // First pass measures, second fills: llama.cpp returns the full length either way.
    int32_t n = llama_chat_apply_template(tmpl.c_str(), chat.data(), chat.size(), add_assistant, nullptr, 0);
    if (n < 0) {
        throw nb::value_error("llama.cpp does not recognise this chat template (llama_chat_builtin_templates() "
                              "lists the names it knows; other templates need a Jinja formatter)");
    }
    std::string out(static_cast<size_t>(n) + 1, '\0');
    n = llama_chat_apply_template(tmpl.c_str(), chat.data(), chat.size(), add_assistant, out.data(),
                                  static_cast<int32_t>(out.size()));
    out.resize(static_cast<size_t>(n));
    return nb::bytes(out.data(), out.size());
}

}  // namespace

void init_chat_template(nb::module_ & m) {
    m.def("chat_apply_template", &apply_template, nb::arg("tmpl"), nb::arg("messages"), nb::arg("add_assistant"),
          "Format (role, content) messages with one of llama.cpp's built-in templates, named or given as "
          "template text; ValueError when llama.cpp does not recognise it.");
    m.def("chat_builtin_templates", []() {
        const int32_t n = llama_chat_builtin_templates(nullptr, 0);
        std::vector<const char *> names(static_cast<size_t>(n > 0 ? n : 0));
        llama_chat_builtin_templates(names.data(), names.size());
        std::vector<std::string> out;
        for (const char * name : names) {
            out.emplace_back(name);
        }
        return out;
    }, "The names of llama.cpp's built-in chat templates.");
}

}  // namespace allama
