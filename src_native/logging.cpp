#include "logging.h"

#include "mtmd-helper.h"

#include "llama.h"

#include <atomic>
#include <dlfcn.h>
#include <cstring>
#include <string>
#include <vector>

namespace nb = nanobind;

namespace allama {

namespace {

// Python logging level at or above which lines are forwarded; 0 means off.
std::atomic<int> g_forward_level{0};
nb::handle g_logger;  // logging.getLogger("allama.native"), never released

// llama_log_set() from allama.llama_cpp: a Python callable given llama.cpp's raw
// (level, text, user_data) calls instead of the logger. Read and replaced with the GIL held
// (attached to the interpreter, on a free-threaded CPython) and under g_user_callback_mutex;
// the references are dropped the same way, never at exit.
nb::ft_mutex g_user_callback_mutex;
PyObject * g_user_callback = nullptr;
PyObject * g_user_data = nullptr;
std::atomic<bool> g_user_callback_set{false};

struct ThreadLogState {
    std::string pending;           // a line still being assembled from fragments
    int pending_level = GGML_LOG_LEVEL_INFO;
    int capture_depth = 0;
    std::vector<std::string> captured;
};

thread_local ThreadLogState t_state;

int python_level(int ggml_level) {
    switch (ggml_level) {
        case GGML_LOG_LEVEL_DEBUG: return 10;
        case GGML_LOG_LEVEL_WARN: return 30;
        case GGML_LOG_LEVEL_ERROR: return 40;
        default: return 20;
    }
}

bool python_finalizing() {
#if defined(Py_LIMITED_API) && Py_LIMITED_API + 0 < 0x030D0000
    // A stable-ABI build runs on CPython versions with different names for this check (the
    // private _Py_IsFinalizing up to 3.12, Py_IsFinalizing from 3.13): look up whichever exists.
    using check_fn = int (*)();
    static const check_fn check = [] {
        void * found = dlsym(RTLD_DEFAULT, "Py_IsFinalizing");
        return reinterpret_cast<check_fn>(found != nullptr ? found : dlsym(RTLD_DEFAULT, "_Py_IsFinalizing"));
    }();
    return check != nullptr && check() != 0;
#elif PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing() != 0;
#else
    return _Py_IsFinalizing() != 0;
#endif
}

void forward_to_python(int level, const std::string & line) {
    if (!Py_IsInitialized() || python_finalizing()) {
        return;
    }
    nb::gil_scoped_acquire gil;
    try {
        // llama.cpp may log invalid UTF-8 (token pieces): decode with replacement.
        nb::object text = nb::steal(PyUnicode_DecodeUTF8(line.data(), static_cast<Py_ssize_t>(line.size()), "replace"));
        g_logger.attr("log")(level, "%s", text);
    } catch (...) {
        // A broken handler must never take llama.cpp down with it.
        PyErr_Clear();
    }
}

void emit_line(int ggml_level, std::string line) {
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
        line.pop_back();
    }
    if (line.empty()) {
        return;
    }
    const int level = python_level(ggml_level);
    if (t_state.capture_depth > 0 && level >= 30 && t_state.captured.size() < 16) {
        t_state.captured.push_back(line);
    }
    const int threshold = g_forward_level.load(std::memory_order_relaxed);
    if (threshold > 0 && level >= threshold && g_logger.ptr() != nullptr &&
        !g_user_callback_set.load(std::memory_order_acquire)) {
        forward_to_python(level, line);
    }
}

// Hands one llama.cpp log call to the llama_log_set() callable, as llama.cpp made it.
void call_user_callback(ggml_log_level level, const char * text) {
    if (!Py_IsInitialized() || python_finalizing()) {
        return;
    }
    nb::gil_scoped_acquire gil;
    // Hold our own references: the callable may replace itself while it runs.
    nb::object callback;
    nb::object user_data;
    {
        nb::ft_lock_guard lock(g_user_callback_mutex);
        if (g_user_callback == nullptr) {
            return;
        }
        callback = nb::borrow(g_user_callback);
        user_data = nb::borrow(g_user_data);
    }
    try {
        callback(static_cast<int>(level), nb::bytes(text, std::strlen(text)), user_data);
    } catch (nb::python_error & e) {
        // A broken callback must never take llama.cpp down with it.
        e.discard_as_unraisable("allama.llama_cpp log callback");
    } catch (...) {
        PyErr_Clear();
    }
}

void log_callback(ggml_log_level level, const char * text, void *) {
    if (text == nullptr) {
        return;
    }
    if (g_user_callback_set.load(std::memory_order_acquire)) {
        call_user_callback(level, text);
    }
    ThreadLogState & st = t_state;
    if (level != GGML_LOG_LEVEL_CONT) {
        if (!st.pending.empty()) {
            emit_line(st.pending_level, std::move(st.pending));
            st.pending.clear();
        }
        st.pending_level = level;
    }
    st.pending += text;
    size_t start = 0;
    size_t nl;
    while ((nl = st.pending.find('\n', start)) != std::string::npos) {
        emit_line(st.pending_level, st.pending.substr(start, nl - start));
        start = nl + 1;
    }
    st.pending.erase(0, start);
}

void set_log_callback(nb::object callback, nb::object user_data) {
    if (!callback.is_none() && !PyCallable_Check(callback.ptr())) {
        throw nb::type_error("the log callback must be callable (or None for allama's default)");
    }
    PyObject * old_callback;
    PyObject * old_data;
    {
        nb::ft_lock_guard lock(g_user_callback_mutex);
        old_callback = g_user_callback;
        old_data = g_user_data;
        if (callback.is_none()) {
            g_user_callback = nullptr;
            g_user_data = nullptr;
        } else {
            g_user_callback = callback.inc_ref().ptr();
            g_user_data = user_data.inc_ref().ptr();
        }
        g_user_callback_set.store(g_user_callback != nullptr, std::memory_order_release);
    }
    Py_XDECREF(old_callback);
    Py_XDECREF(old_data);
}

void set_log_level(nb::object level) {
    g_forward_level.store(level.is_none() ? 0 : nb::cast<int>(level));
}

}  // namespace

LogCapture::LogCapture() : outer_(t_state.capture_depth == 0) {
    if (outer_) {
        t_state.captured.clear();
    }
    ++t_state.capture_depth;
}

LogCapture::~LogCapture() {
    --t_state.capture_depth;
}

std::string LogCapture::message(const std::string & fallback) const {
    if (t_state.captured.empty()) {
        return fallback;
    }
    std::string out;
    for (const auto & line : t_state.captured) {
        if (!out.empty()) {
            out += "; ";
        }
        out += line;
    }
    return out;
}

void init_logging(nb::module_ & m) {
    g_logger = nb::module_::import_("logging").attr("getLogger")("allama.native").release();
    llama_log_set(log_callback, nullptr);
    mtmd_helper_log_set(log_callback, nullptr);  // mtmd and its clip encoder log on their own
    m.def("set_log_level", &set_log_level, nb::arg("level").none(),
          nb::sig("def set_log_level(level: int | None) -> None"),
          "Forward llama.cpp log lines at or above this Python logging level to the "
          "'allama.native' logger; None turns forwarding off (the default).");
    m.def("set_log_callback", &set_log_callback, nb::arg("callback").none(), nb::arg("user_data").none() = nb::none(),
          nb::sig("def set_log_callback(callback: collections.abc.Callable[[int, bytes, object], object] | None, "
                  "user_data: object = None) -> None"),
          "Send every llama.cpp log call to callback(level, text, user_data) as llama.cpp makes it (ggml "
          "levels, text fragments with their newlines), instead of the 'allama.native' logger; None restores "
          "that. Failures are still captured for exception messages.");
    m.def("log_level", []() -> nb::object {
        int level = g_forward_level.load();
        return level > 0 ? nb::object(nb::int_(level)) : nb::none();
    }, nb::sig("def log_level() -> int | None"), "The level set by set_log_level(), or None when forwarding is off.");
}

}  // namespace allama
