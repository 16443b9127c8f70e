// The worker side of ggml's RPC backend: `allama rpc-server` serves this machine's devices
// to models on other hosts (Llama(rpc_servers=...)).
#pragma once

#include <nanobind/nanobind.h>

namespace allama {

void init_rpc_worker(nanobind::module_ & m);

}  // namespace allama
