// Process-wide llama.cpp state: backend initialisation, build and system facts.
#pragma once

#include <nanobind/nanobind.h>

namespace allama {

void init_backend(nanobind::module_ & m);

}  // namespace allama
