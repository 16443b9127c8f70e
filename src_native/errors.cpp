#include "errors.h"

namespace nb = nanobind;

namespace allama {

namespace {

// The allama.errors class name of one of our failure types (its message in `message`), or
// nullptr for any other exception. The one place that maps C++ failures to Python classes.
const char * allama_class_of(const std::exception_ptr & p, std::string & message) {
    try {
        std::rethrow_exception(p);
    } catch (const ModelLoadFailure & e) {
        message = e.what();
        return "ModelLoadError";
    } catch (const GrammarFailure & e) {
        message = e.what();
        return "GrammarError";
    } catch (const KVCacheFull & e) {
        message = e.what();
        return "KVCacheFullError";
    } catch (const DecodeAborted & e) {
        message = e.what();
        return "DecodeAbortedError";
    } catch (const WorkerLost & e) {
        message = e.what();
        return "WorkerLostError";
    } catch (const DecodeFailure & e) {
        message = e.what();
        return "DecodeError";
    } catch (const UseAfterClose & e) {
        message = e.what();
        return "ClosedError";
    } catch (...) {
        return nullptr;
    }
}

// The Python classes live in allama/errors.py so that the whole hierarchy is
// defined (and documented) in one place. It is imported on first use, so that
// the extension also imports on its own (nanobind's stubgen does that).
nb::object allama_class(const char * name) {
    return nb::module_::import_("allama.errors").attr(name);
}

}  // namespace

nb::object python_exception(const std::exception_ptr & failure) {
    std::string message;
    if (const char * name = allama_class_of(failure, message)) {
        return allama_class(name)(message.c_str());
    }
    nb::object runtime_error = nb::module_::import_("builtins").attr("RuntimeError");
    try {
        std::rethrow_exception(failure);
    } catch (const std::exception & e) {
        return runtime_error(e.what());
    } catch (...) {
        return runtime_error("unknown native failure");
    }
}

void init_errors(nb::module_ &) {
    nb::register_exception_translator([](const std::exception_ptr & p, void *) {
        std::string message;
        const char * name = allama_class_of(p, message);
        if (name == nullptr) {
            std::rethrow_exception(p);  // not ours: nanobind's own translators take it
        }
        PyErr_SetString(allama_class(name).ptr(), message.c_str());
    });
}

}  // namespace allama
