#include "media.h"

#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "context.h"
#include "errors.h"
#include "clip.h"
#include "gguf.h"
#include "logging.h"
#include "mtmd-helper.h"
#include "mtmd.h"

namespace nb = nanobind;

namespace allama {

namespace {

// A bitmap: an image (RGB, nx x ny) or audio (float PCM at the projector's sample rate).
class MediaBitmap {
public:
    explicit MediaBitmap(mtmd_bitmap * raw) : ptr_(raw, mtmd_bitmap_free) {}

    mtmd_bitmap * get() const { return ptr_.get(); }
    uint32_t nx() const { return mtmd_bitmap_get_nx(get()); }
    uint32_t ny() const { return mtmd_bitmap_get_ny(get()); }
    size_t n_bytes() const { return mtmd_bitmap_get_n_bytes(get()); }
    bool is_audio() const { return mtmd_bitmap_is_audio(get()); }
    std::string id() const {
        const char * id = mtmd_bitmap_get_id(get());
        return id ? id : "";
    }
    void set_id(const std::string & id) { mtmd_bitmap_set_id(get(), id.c_str()); }

private:
    BitmapPtr ptr_;
};

MediaBitmap bitmap_from_rgb(nb::ndarray<const uint8_t, nb::ndim<3>, nb::c_contig, nb::device::cpu> pixels) {
    if (pixels.shape(2) != 3) {
        throw nb::value_error("an image must be an H x W x 3 array of RGB bytes");
    }
    const size_t ny = pixels.shape(0), nx = pixels.shape(1);
    if (nx == 0 || ny == 0 || nx > (1u << 15) || ny > (1u << 15)) {
        throw nb::value_error("an image must be between 1 and 32768 pixels on each side");
    }
    mtmd_bitmap * raw = mtmd_bitmap_init(static_cast<uint32_t>(nx), static_cast<uint32_t>(ny), pixels.data());
    if (raw == nullptr) {
        throw std::bad_alloc();
    }
    return MediaBitmap(raw);
}

MediaBitmap bitmap_from_samples(nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu> samples) {
    if (samples.shape(0) == 0) {
        throw nb::value_error("audio must have at least one sample");
    }
    mtmd_bitmap * raw = mtmd_bitmap_init_from_audio(samples.shape(0), samples.data());
    if (raw == nullptr) {
        throw std::bad_alloc();
    }
    return MediaBitmap(raw);
}

// A view of one chunk of a MediaChunks; keeps the chunks alive.
struct MediaChunk {
    ChunksPtr owner;
    const mtmd_input_chunk * chunk;

    std::string type() const {
        switch (mtmd_input_chunk_get_type(chunk)) {
            case MTMD_INPUT_CHUNK_TYPE_TEXT: return "text";
            case MTMD_INPUT_CHUNK_TYPE_IMAGE: return "image";
            case MTMD_INPUT_CHUNK_TYPE_AUDIO: return "audio";
            default: return "other";
        }
    }
    std::vector<llama_token> tokens() const {
        size_t n = 0;
        const llama_token * tokens = mtmd_input_chunk_get_tokens_text(chunk, &n);
        return tokens ? std::vector<llama_token>(tokens, tokens + n) : std::vector<llama_token>();
    }
    size_t n_tokens() const { return mtmd_input_chunk_get_n_tokens(chunk); }
    llama_pos n_pos() const { return mtmd_input_chunk_get_n_pos(chunk); }
    std::string id() const {
        const char * id = mtmd_input_chunk_get_id(chunk);
        return id ? id : "";
    }
};

// A tokenized prompt: text and media chunks in order.
class MediaChunks {
public:
    MediaChunks() : ptr_(mtmd_input_chunks_init(), mtmd_input_chunks_free) {}

    mtmd_input_chunks * get() const { return ptr_.get(); }
    size_t size() const { return mtmd_input_chunks_size(get()); }
    MediaChunk at(int64_t i) const {
        const int64_t n = static_cast<int64_t>(size());
        if (i < 0) {
            i += n;
        }
        if (i < 0 || i >= n) {
            throw nb::index_error("chunk index out of range");
        }
        return MediaChunk{ptr_, mtmd_input_chunks_get(get(), static_cast<size_t>(i))};
    }
    size_t n_tokens() const { return mtmd_helper_get_n_tokens(get()); }
    llama_pos n_pos() const { return mtmd_helper_get_n_pos(get()); }

private:
    ChunksPtr ptr_;
};

// Settings in a projector file that mtmd accepts and then aborts or hangs on; refused here
// with ValueError. Window attention (Qwen2.5-VL and its kin) builds a window mask: with
// n_wa_pattern 1 no layer reads it and clip.cpp aborts ("Failed to get tensor window_mask"),
// and a window narrower than two patches makes its window loop never advance.
void check_projector_settings(const std::string & path) {
    gguf_init_params params{/*no_alloc =*/true, /*ctx =*/nullptr};
    gguf_context * ctx = gguf_init_from_file(path.c_str(), params);
    if (ctx == nullptr) {
        return;  // not readable as GGUF: mtmd reports why
    }
    std::unique_ptr<gguf_context, decltype(&gguf_free)> owner(ctx, gguf_free);
    auto get_uint = [&](const char * key, int64_t fallback) -> int64_t {
        const int64_t id = gguf_find_key(ctx, key);
        if (id < 0) {
            return fallback;
        }
        switch (gguf_get_kv_type(ctx, id)) {
            case GGUF_TYPE_UINT32: return gguf_get_val_u32(ctx, id);
            case GGUF_TYPE_INT32: return gguf_get_val_i32(ctx, id);
            default: return fallback;
        }
    };
    const int64_t type_id = gguf_find_key(ctx, "clip.projector_type");
    if (type_id < 0 || gguf_get_kv_type(ctx, type_id) != GGUF_TYPE_STRING) {
        return;
    }
    const std::string type = gguf_get_val_str(ctx, type_id);
    const int64_t patch = get_uint("clip.vision.patch_size", 0);
    const int64_t window = get_uint("clip.vision.window_size", 0);
    bool windowed = false;
    if (type == "qwen2.5vl_merger" || type == "exaone4_5") {
        const int64_t pattern = get_uint("clip.vision.n_wa_pattern", 0);
        if (pattern == 1) {
            throw nb::value_error(("the projector " + path + " sets n_wa_pattern 1 (no windowed layer), which mtmd "
                                   "cannot run").c_str());
        }
        windowed = pattern > 0;
    } else if (type == "youtuvl") {
        const int64_t id = gguf_find_key(ctx, "clip.vision.wa_layer_indexes");
        windowed = id >= 0 && gguf_get_kv_type(ctx, id) == GGUF_TYPE_ARRAY && gguf_get_arr_n(ctx, id) > 0;
    }
    if (windowed && patch > 0 && (window > 0 ? window : 112) / patch / 2 < 1) {
        throw nb::value_error(("the projector " + path + " has an attention window narrower than two patches, "
                               "which mtmd cannot run").c_str());
    }
}

// A projector (mmproj) loaded for a text model.
class MediaContext {
public:
    MediaContext(const Model & model, const std::string & path, bool use_gpu, int n_threads,
                 std::optional<std::string> media_marker, bool warmup)
        : model_(model.ptr()) {
        if (n_threads < 1) {
            throw nb::value_error("n_threads must be at least 1");
        }
        mtmd_context_params params = mtmd_context_params_default();
        params.use_gpu = use_gpu;
        params.n_threads = n_threads;
        params.print_timings = false;
        params.warmup = warmup;
        if (media_marker) {
            if (media_marker->empty()) {
                throw nb::value_error("media_marker must not be empty");
            }
            marker_ = *media_marker;
            params.media_marker = marker_.c_str();
        }
        check_projector_settings(path);
        std::string reason;
        mtmd_context * raw = nullptr;
        {
            LogCapture capture;
            {
                nb::gil_scoped_release release;
                try {
                    raw = mtmd_init_from_file(path.c_str(), model_.get(), params);
                } catch (const std::exception & e) {
                    reason = e.what();
                }
            }
            if (raw == nullptr && reason.empty()) {
                reason = capture.message("mtmd gave no reason");
            }
        }
        if (raw == nullptr) {
            throw nb::value_error(("cannot load the projector " + path + ": " + reason).c_str());
        }
        ctx_ = MediaContextPtr(raw, mtmd_free);
    }

    mtmd_context * get() const { return ctx_.get(); }
    bool supports_vision() const { return mtmd_support_vision(get()); }
    bool supports_audio() const { return mtmd_support_audio(get()); }
    int audio_sample_rate() const { return mtmd_get_audio_sample_rate(get()); }
    std::string marker() const { return mtmd_get_marker(get()); }

    MediaBitmap bitmap_from_bytes(nb::bytes data) const {
        if (data.size() == 0) {
            throw nb::value_error("the media is empty");
        }
        mtmd_helper_bitmap_wrapper wrapped{};
        LogCapture capture;
        {
            nb::gil_scoped_release release;
            wrapped = mtmd_helper_bitmap_init_from_buf(get(), reinterpret_cast<const unsigned char *>(data.c_str()),
                                                       data.size(), false, mtmd_helper_init_opt_default());
        }
        return checked(wrapped, capture);
    }

    MediaBitmap bitmap_from_file(const std::string & path) const {
        mtmd_helper_bitmap_wrapper wrapped{};
        LogCapture capture;
        {
            nb::gil_scoped_release release;
            wrapped = mtmd_helper_bitmap_init_from_file(get(), path.c_str(), false, mtmd_helper_init_opt_default());
        }
        return checked(wrapped, capture);
    }

    MediaChunks tokenize(const std::string & text, const std::vector<const MediaBitmap *> & bitmaps, bool add_special,
                         bool parse_special) const {
        MediaChunks chunks;
        std::vector<const mtmd_bitmap *> raw;
        for (const MediaBitmap * b : bitmaps) {
            if (b == nullptr) {
                throw nb::type_error("bitmaps must be Bitmap objects");
            }
            if (b->is_audio() ? !supports_audio() : !supports_vision()) {
                throw nb::value_error(b->is_audio() ? "this projector does not take audio"
                                                    : "this projector does not take images");
            }
            if (b->is_audio() && b->n_bytes() < 2 * sizeof(float)) {
                // mtmd asserts (aborts) on a clip this short
                throw nb::value_error("an audio clip needs at least 2 samples");
            }
            raw.push_back(b->get());
        }
        const std::string mark = marker();
        size_t markers = 0;
        for (size_t at = text.find(mark); at != std::string::npos; at = text.find(mark, at + mark.size())) {
            ++markers;
        }
        if (markers != raw.size()) {
            throw nb::value_error(("the prompt has " + std::to_string(markers) + " media markers (" + mark + ") for " +
                                   std::to_string(raw.size()) + " media: the number of media markers must match")
                                      .c_str());
        }
        mtmd_input_text input{text.c_str(), text.size(), add_special, parse_special};
        int32_t status = 0;
        LogCapture capture;
        {
            nb::gil_scoped_release release;
            status = mtmd_tokenize(get(), chunks.get(), &input, raw.data(), raw.size());
        }
        if (status != 0) {
            throw nb::value_error(("the media could not be preprocessed for this projector: " +
                                   capture.message("mtmd gave no reason")).c_str());
        }
        return chunks;
    }

    // Evaluates `chunks` into sequence `seq_id` of `ctx` from position `n_past`: text chunks are
    // decoded, media chunks encoded then decoded. Returns the new n_past.
    llama_pos eval_chunks(Context & ctx, const MediaChunks & chunks, llama_pos n_past, llama_seq_id seq_id,
                          int32_t n_batch, bool logits_last) const {
        auto lk = ctx.lock_open();
        ctx.check_seq_id(seq_id);
        if (n_past < 0) {
            throw nb::value_error("n_past must be >= 0");
        }
        if (n_batch < 1 || static_cast<uint32_t>(n_batch) > llama_n_batch(ctx.get())) {
            throw nb::value_error("n_batch must be between 1 and the context's n_batch");
        }
        if (llama_model_n_embd_inp(model_.get()) != llama_model_n_embd_inp(ctx.model().get())) {
            throw nb::value_error("the context belongs to a different model than the projector");
        }
        // positions, or KV cells where they are more (M-RoPE media take fewer positions than tokens)
        const llama_pos needed = n_past + std::max<llama_pos>(chunks.n_pos(), static_cast<llama_pos>(chunks.n_tokens()));
        if (needed > static_cast<llama_pos>(llama_n_ctx(ctx.get()))) {
            throw nb::value_error(("the prompt needs " + std::to_string(needed) + " positions; the context has " +
                                   std::to_string(llama_n_ctx(ctx.get()))).c_str());
        }
        llama_pos new_n_past = n_past;
        int32_t status = 0;
        LogCapture capture;
        {
            nb::gil_scoped_release release;
            status = mtmd_helper_eval_chunks(get(), ctx.get(), chunks.get(), n_past, seq_id, n_batch, logits_last,
                                             &new_n_past);
        }
        if (status != 0) {
            ctx.recorded_external_decode(0);
            throw DecodeFailure("evaluating media chunks failed (status " + std::to_string(status) + ")" +
                                (capture.message().empty() ? "" : ": " + capture.message()));
        }
        const size_t n = chunks.size();
        const bool text_last = n > 0 && mtmd_input_chunk_get_type(mtmd_input_chunks_get(chunks.get(), n - 1)) ==
                                            MTMD_INPUT_CHUNK_TYPE_TEXT;
        ctx.recorded_external_decode(logits_last && text_last ? 1 : 0);
        return new_n_past;
    }

    // Encodes and decodes one media chunk of `chunks` into sequence `seq_id` from position
    // `n_past` (no logits); returns the new n_past. The engine prefills text itself.
    llama_pos eval_media_chunk(Context & ctx, const MediaChunks & chunks, int64_t index, llama_pos n_past,
                               llama_seq_id seq_id, int32_t n_batch) const {
        const MediaChunk chunk = chunks.at(index);
        if (chunk.type() == "text") {
            throw nb::value_error(("chunk " + std::to_string(index) + " is text, not media").c_str());
        }
        auto lk = ctx.lock_open();
        ctx.check_seq_id(seq_id);
        if (n_past < 0 || n_batch < 1 || static_cast<uint32_t>(n_batch) > llama_n_batch(ctx.get())) {
            throw nb::value_error("n_past must be >= 0 and n_batch between 1 and the context's n_batch");
        }
        if (n_past + std::max<llama_pos>(chunk.n_pos(), static_cast<llama_pos>(chunk.n_tokens())) >
            static_cast<llama_pos>(llama_n_ctx(ctx.get()))) {
            throw nb::value_error("the medium does not fit in the context");
        }
        llama_pos new_n_past = n_past;
        int32_t status = 0;
        LogCapture capture;
        {
            nb::gil_scoped_release release;
            status = mtmd_helper_eval_chunk_single(get(), ctx.get(), chunk.chunk, n_past, seq_id, n_batch, false,
                                                   &new_n_past);
        }
        ctx.recorded_external_decode(0);
        if (status != 0) {
            throw DecodeFailure("evaluating a media chunk failed (status " + std::to_string(status) + ")" +
                                (capture.message().empty() ? "" : ": " + capture.message()));
        }
        return new_n_past;
    }

    // The projector's output for one media chunk: a copy, n_tokens x n_embd float32.
    nb::ndarray<nb::numpy, float> encode_media_chunk(const MediaChunks & chunks, int64_t index) const {
        const MediaChunk chunk = chunks.at(index);
        if (chunk.type() == "text") {
            throw nb::value_error(("chunk " + std::to_string(index) + " is text, not media").c_str());
        }
        const size_t n_embd = static_cast<size_t>(llama_model_n_embd_inp(model_.get()));
        const size_t n_tokens = chunk.n_tokens();
        auto * data = new float[n_tokens * n_embd];
        nb::capsule owner(data, [](void * p) noexcept { delete[] static_cast<float *>(p); });
        int32_t status = 0;
        LogCapture capture;
        {
            nb::gil_scoped_release release;
            status = mtmd_encode_chunk(get(), chunk.chunk);
            if (status == 0) {
                std::memcpy(data, mtmd_get_output_embd(get()), sizeof(float) * n_tokens * n_embd);
            }
        }
        if (status != 0) {
            throw DecodeFailure("encoding a media chunk failed (status " + std::to_string(status) + ")" +
                                (capture.message().empty() ? "" : ": " + capture.message()));
        }
        return nb::ndarray<nb::numpy, float>(data, {n_tokens, n_embd}, owner);
    }

    // Decodes embeddings made by encode_media_chunk (for chunk `index`) into sequence `seq_id`
    // from position `n_past`, as mtmd places that medium; returns the new n_past.
    llama_pos decode_media_embeddings(Context & ctx, const MediaChunks & chunks, int64_t index,
                                      nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu> embd,
                                      llama_pos n_past, llama_seq_id seq_id, int32_t n_batch) const {
        const MediaChunk chunk = chunks.at(index);
        if (chunk.type() == "text") {
            throw nb::value_error(("chunk " + std::to_string(index) + " is text, not media").c_str());
        }
        const size_t n_embd = static_cast<size_t>(llama_model_n_embd_inp(model_.get()));
        if (embd.shape(0) != chunk.n_tokens() || embd.shape(1) != n_embd) {
            throw nb::value_error(("the embeddings must be " + std::to_string(chunk.n_tokens()) + " x " +
                                   std::to_string(n_embd) + " for this medium").c_str());
        }
        auto lk = ctx.lock_open();
        ctx.check_seq_id(seq_id);
        if (llama_model_n_embd_inp(model_.get()) != llama_model_n_embd_inp(ctx.model().get())) {
            throw nb::value_error("the context belongs to a different model than the projector");
        }
        if (n_past < 0 || n_batch < 1 || static_cast<uint32_t>(n_batch) > llama_n_batch(ctx.get())) {
            throw nb::value_error("n_past must be >= 0 and n_batch between 1 and the context's n_batch");
        }
        if (n_past + std::max<llama_pos>(chunk.n_pos(), static_cast<llama_pos>(chunk.n_tokens())) >
            static_cast<llama_pos>(llama_n_ctx(ctx.get()))) {
            throw nb::value_error("the medium does not fit in the context");
        }
        // mtmd's helper takes a mutable pointer but only reads it
        std::vector<float> rows(embd.data(), embd.data() + embd.size());
        llama_pos new_n_past = n_past;
        int32_t status = 0;
        LogCapture capture;
        {
            nb::gil_scoped_release release;
            status = mtmd_helper_decode_image_chunk(get(), ctx.get(), chunk.chunk, rows.data(), n_past, seq_id,
                                                    n_batch, &new_n_past, nullptr, nullptr);
        }
        ctx.recorded_external_decode(0);
        if (status != 0) {
            throw DecodeFailure("decoding media embeddings failed (status " + std::to_string(status) + ")" +
                                (capture.message().empty() ? "" : ": " + capture.message()));
        }
        return new_n_past;
    }

    int32_t n_embd() const { return llama_model_n_embd_inp(model_.get()); }
    bool uses_mrope() const { return mtmd_decode_use_mrope(get()); }

private:
    static MediaBitmap checked(mtmd_helper_bitmap_wrapper wrapped, const LogCapture & capture) {
        if (wrapped.video_ctx != nullptr) {
            mtmd_helper_video_free(wrapped.video_ctx);
            if (wrapped.bitmap != nullptr) {
                mtmd_bitmap_free(wrapped.bitmap);
            }
            throw nb::value_error("video is not supported");
        }
        if (wrapped.bitmap == nullptr) {
            const std::string reason = capture.message();
            throw nb::value_error(("the media could not be decoded (not an image or audio format mtmd reads" +
                                   (reason.empty() ? std::string(")") : "): " + reason)).c_str());
        }
        return MediaBitmap(wrapped.bitmap);
    }

    ModelPtr model_;  // the text model outlives the projector that points to it
    std::string marker_;
    MediaContextPtr ctx_;
};

}  // namespace

// What a projector file offers, read from its metadata only: (has vision, has audio).
std::pair<bool, bool> projector_capabilities(const std::string & path) {
    {
        std::ifstream file(path, std::ios::binary);
        char magic[4] = {};
        if (!file || !file.read(magic, 4)) {
            throw nb::value_error(("cannot read the projector file " + path).c_str());
        }
        if (std::memcmp(magic, "GGUF", 4) != 0) {
            throw nb::value_error(("not a GGUF file: " + path).c_str());
        }
    }
    LogCapture capture;
    try {
        nb::gil_scoped_release release;
        const clip_cap cap = clip_get_cap(path.c_str());
        return {cap.has_vision, cap.has_audio};
    } catch (const std::exception & e) {
        throw nb::value_error(("not a projector file " + path + ": " + e.what()).c_str());
    }
}

void init_media(nb::module_ & m) {
    m.def("projector_capabilities", &projector_capabilities, nb::arg("path"),
          "(has vision, has audio) of a projector (mmproj GGUF), from its metadata.");
    m.def("default_media_marker", [] { return std::string(mtmd_default_marker()); },
          "The text that marks where a medium goes in a prompt (\"<__media__>\").");

    nb::class_<MediaBitmap>(m, "Bitmap", "An image (RGB) or audio clip, ready for a projector.")
        .def_static("from_rgb", &bitmap_from_rgb, nb::arg("pixels").noconvert(),
                    "An image from an H x W x 3 uint8 array (C-contiguous).")
        .def_static("from_audio", &bitmap_from_samples, nb::arg("samples").noconvert(),
                    "Audio from mono float32 PCM samples at the projector's sample rate.")
        .def_prop_ro("nx", &MediaBitmap::nx)
        .def_prop_ro("ny", &MediaBitmap::ny)
        .def_prop_ro("n_bytes", &MediaBitmap::n_bytes)
        .def_prop_ro("is_audio", &MediaBitmap::is_audio)
        .def_prop_rw("id", &MediaBitmap::id, &MediaBitmap::set_id,
                     "An identity for prefix caching (the SHA-256 of the encoded file when decoded from bytes).");

    nb::class_<MediaChunk>(m, "MediaChunk", "One chunk of a tokenized prompt: text tokens, or an image or audio clip.")
        .def_prop_ro("type", &MediaChunk::type, "\"text\", \"image\" or \"audio\".")
        .def_prop_ro("tokens", &MediaChunk::tokens, "The token ids of a text chunk (empty for media).")
        .def_prop_ro("n_tokens", &MediaChunk::n_tokens)
        .def_prop_ro("n_pos", &MediaChunk::n_pos)
        .def_prop_ro("id", &MediaChunk::id);

    nb::class_<MediaChunks>(m, "MediaChunks", "A prompt tokenized into text and media chunks.")
        .def("__len__", &MediaChunks::size)
        .def("__getitem__", &MediaChunks::at, nb::arg("index"))
        .def_prop_ro("n_tokens", &MediaChunks::n_tokens, "KV cells the prompt takes.")
        .def_prop_ro("n_pos", &MediaChunks::n_pos, "Positions the prompt takes (differs from n_tokens with M-RoPE).");

    nb::class_<MediaContext>(m, "MediaContext", "A multimodal projector (mmproj GGUF) loaded for a text model.")
        .def(nb::init<const Model &, const std::string &, bool, int, std::optional<std::string>, bool>(),
             nb::arg("model"), nb::arg("path"), nb::arg("use_gpu") = false, nb::arg("n_threads") = 4,
             nb::arg("media_marker") = nb::none(), nb::arg("warmup") = false,
             "Loads the projector; raises ValueError when it cannot (missing file, not a projector, a "
             "projector for another model).")
        .def_prop_ro("supports_vision", &MediaContext::supports_vision)
        .def_prop_ro("supports_audio", &MediaContext::supports_audio)
        .def_prop_ro("audio_sample_rate", &MediaContext::audio_sample_rate, "-1 without audio.")
        .def_prop_ro("marker", &MediaContext::marker)
        .def("bitmap_from_bytes", &MediaContext::bitmap_from_bytes, nb::arg("data"),
             "Decodes an encoded image (JPEG, PNG, BMP, GIF, ...) or audio file (WAV, MP3, FLAC).")
        .def("bitmap_from_file", &MediaContext::bitmap_from_file, nb::arg("path"))
        .def("tokenize", &MediaContext::tokenize, nb::arg("text"), nb::arg("bitmaps"), nb::arg("add_special") = true,
             nb::arg("parse_special") = true,
             "Splits a prompt with one media marker per bitmap into text and media chunks.")
        .def("eval_chunks", &MediaContext::eval_chunks, nb::arg("ctx"), nb::arg("chunks"), nb::arg("n_past"),
             nb::arg("seq_id"), nb::arg("n_batch"), nb::arg("logits_last") = true,
             "Decodes the chunks into a sequence from position n_past (media encoded first); returns the new "
             "n_past. With logits_last, the last text token's logits are readable as row -1.")
        .def("eval_media_chunk", &MediaContext::eval_media_chunk, nb::arg("ctx"), nb::arg("chunks"), nb::arg("index"),
             nb::arg("n_past"), nb::arg("seq_id"), nb::arg("n_batch"),
             "Encodes and decodes the media chunk chunks[index] into a sequence; returns the new n_past.")
        .def("encode_media_chunk", &MediaContext::encode_media_chunk, nb::arg("chunks"), nb::arg("index"),
             "The projector's embeddings for the media chunk chunks[index] (n_tokens x n_embd float32).")
        .def("decode_media_embeddings", &MediaContext::decode_media_embeddings, nb::arg("ctx"), nb::arg("chunks"),
             nb::arg("index"), nb::arg("embeddings").noconvert(), nb::arg("n_past"), nb::arg("seq_id"), nb::arg("n_batch"),
             "Decodes embeddings from encode_media_chunk into a sequence where mtmd places that medium; returns the new n_past.")
        .def_prop_ro("n_embd", &MediaContext::n_embd, "The text model's input embedding width.")
        .def_prop_ro("uses_mrope", &MediaContext::uses_mrope, "Whether media take M-RoPE positions (n_pos != n_tokens).");
}

}  // namespace allama
