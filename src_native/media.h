// Media (images, audio) through llama.cpp's mtmd library: a projector context for a text
// model, bitmaps, and prompts tokenized into text and media chunks.
#pragma once

#include <nanobind/nanobind.h>

#include <memory>
#include <string>

#include "model.h"

struct mtmd_context;
struct mtmd_bitmap;
struct mtmd_input_chunks;

namespace allama {

using MediaContextPtr = std::shared_ptr<mtmd_context>;
using BitmapPtr = std::shared_ptr<mtmd_bitmap>;
using ChunksPtr = std::shared_ptr<mtmd_input_chunks>;

void init_media(nanobind::module_ & m);

}  // namespace allama
