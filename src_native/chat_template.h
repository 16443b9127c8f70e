// llama.cpp's built-in chat templates (llama_chat_apply_template): the fixed set of
// formats llama.cpp recognises by name or by template text, without a Jinja engine.
#pragma once

#include <nanobind/nanobind.h>

namespace allama {

void init_chat_template(nanobind::module_ & m);

}  // namespace allama
